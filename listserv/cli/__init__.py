"""The admin's command line: parse arguments, call one function, print a table or JSON."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.admin import lists as admin
from listserv.admin import threads as forum
from listserv.cli.archive import archive
from listserv.cli.personal import members_export_data, members_forget
from listserv.cli.surgery import thread
from listserv.config import DEFAULT_PATH, Config, ConfigError, load
from listserv.core.digest import Period, latest_due, parse_day, period
from listserv.inbound import moderation
from listserv.store import roles as listroles
from listserv.store.database import Database, sqlite_path
from listserv.store.models import ARCHIVES, MODES, POLICIES, MailingList
from listserv.store.settings import token_secret


def _version() -> str:
    try:
        return version("listserv")
    except PackageNotFoundError:
        return "0+unknown"


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


class Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            required = self.config_path is not None
            try:
                self._config = load(self.config_path, required=required)
            except ConfigError as exc:
                fail(str(exc))
        return self._config

    def database(self, *, create: bool = False) -> Database:
        """The configured database. Without a config file, only `db init` (create) may make
        the default one: any other command there is run in the wrong folder, and would
        otherwise work on a new, empty database."""
        config = self.config
        if not create and self.config_path is None and not Path(DEFAULT_PATH).exists():
            path = sqlite_path(config.database_url)
            if path is not None and not path.exists():
                fail(f"no {DEFAULT_PATH} here (nor -c or $LISTSERV_CONFIG) and no database "
                     f"at {path}: run in the folder of your config, give -c CONFIG, or "
                     "run `listserv db init` to start one here")
        try:
            return Database(config.database_url, config.database.busy_timeout)
        except OSError as exc:
            fail(f"database.url: cannot create {exc.filename}: {exc.strerror}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction; admin and database errors become one line on stderr."""
        db = self.database()
        try:
            db.create_schema()
            with db.session() as session:
                yield session
        except admin.AdminError as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            fail(database_error(exc))
        finally:
            db.dispose()


def database_error(exc: SQLAlchemyError) -> str:
    return f"database error: {str(exc.__cause__ or exc).splitlines()[0]}"


def shown_url(config: Config) -> str:
    """The database URL for the terminal, its password masked."""
    return make_url(config.database_url).render_as_string(hide_password=True)


pass_ctx = click.make_pass_decorator(Context)


def now() -> datetime:
    return datetime.now(UTC)


def emit(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    """A listing as JSON (a list of objects) or as an aligned table."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


json_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list of objects."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", envvar="LISTSERV_CONFIG",
              type=click.Path(dir_okay=False), default=None,
              help="Config file (default ./config.toml, or $LISTSERV_CONFIG).")
@click.version_option(_version(), prog_name="listserv")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """listserv: a mailing-list forum that lives in the inbox."""
    ctx.obj = Context(config_path)


# -- db ------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema."""


@db.command("init")
@pass_ctx
def db_init(ctx: Context) -> None:
    """Create the schema, or bring it up to date (safe to run again)."""
    _migrate(ctx, create=True)
    with ctx.session() as s:
        token_secret(s, ctx.config)
    click.echo(f"database ready: {shown_url(ctx.config)}")


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Migrate an empty or older database to the current schema."""
    before, after = _migrate(ctx, revision)
    click.echo(f"database at revision {after} (was {before or 'empty'})")


def _migrate(ctx: Context, revision: str = "head",
             create: bool = False) -> tuple[str | None, str | None]:
    from alembic.util import CommandError

    from listserv.store import migrate

    database = ctx.database(create=create)
    try:
        return migrate.upgrade(database.engine, revision)
    except CommandError as exc:
        fail(f"migration error: {exc}")
    except SQLAlchemyError as exc:
        fail(database_error(exc))
    finally:
        database.dispose()


# -- serve ---------------------------------------------------------------------------------
@main.command()
@click.option("--role", "role",
              type=click.Choice(["all", "receiver", "dispatcher", "scheduler", "web"]),
              default="all", show_default=True, help="Which part of listserv this process runs.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Receiver processes sharing the SMTP port, e.g. one per core "
                   "(default: [receiver] workers, 1).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details too.")
@pass_ctx
def serve(ctx: Context, role: str, workers: int | None, verbose: bool) -> None:
    """Receive posts by SMTP, deliver them, and serve the web archive (Ctrl-C stops
    cleanly)."""
    from listserv.outbound.signing import SigningKeyError
    from listserv.server import ROLES, configure_logging, run

    config = ctx.config
    if workers is not None:
        if role not in ("all", "receiver"):
            fail(f"--workers runs receiver processes; --role {role} has none")
        config = replace(config, receiver=replace(config.receiver, workers=workers))
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        run(config, ROLES if role == "all" else (role,))
    except OSError as exc:
        fail(f"cannot start: {_start_error(config, exc)}")
    except SigningKeyError as exc:
        fail(f"cannot start: dkim.private_key_file {config.dkim_key_path}: {exc}")
    except SQLAlchemyError as exc:
        fail(f"cannot start: database.url {shown_url(config)}: "
             f"{str(exc.__cause__ or exc).splitlines()[0]}")


def _start_error(config: Config, exc: OSError) -> str:
    """What stopped `serve`, with the file, or the config keys of the address it could not
    listen on."""
    if exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    text = exc.strerror or str(exc)
    for section, server in (("receiver", config.receiver), ("web", config.web)):
        if f"('{server.host}', {server.port})" in text:
            return f"{section}.host {server.host!r}, {section}.port {server.port}: {text}"
    return text


# -- lists ---------------------------------------------------------------------------------
@main.group()
def lists() -> None:
    """Create, show and delete lists."""


@lists.command("create")
@click.argument("address")
@click.option("--title", required=True, help="Shown in From, List-Id and digests.")
@click.option("--subject-prefix", default="", help='E.g. "[Living with ALS]".')
@click.option("--description", default="", help="What the list is for.")
@click.option("--from-rewrite", type=click.Choice(["always", "alias", "never"]),
              default="always", show_default=True,
              help="Send posts From the list (DMARC-safe), From the author's private alias "
                   "on the list (DMARC-safe, replies to it reach the author only), or keep "
                   "the author's From.")
@pass_ctx
def lists_create(ctx: Context, address: str, title: str, subject_prefix: str,
                 description: str, from_rewrite: str) -> None:
    """Create a list; ADDRESS is a name (the configured domain is added) or an address."""
    with ctx.session() as s:
        ml = admin.create_list(s, ctx.config, address, title, subject_prefix, description, now())
        ml.from_rewrite = from_rewrite
    click.echo(f"created {ml.address}")


@lists.command("list")
@json_option
@pass_ctx
def lists_list(ctx: Context, as_json: bool) -> None:
    """All lists with their member counts."""
    from sqlalchemy import select

    from listserv.store.models import MailingList

    with ctx.session() as s:
        rows = [admin.list_summary(s, ml)
                for ml in s.scalars(select(MailingList).order_by(MailingList.address))]
    emit(rows, as_json, ["address", "title", "members"])


@lists.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def lists_show(ctx: Context, address: str, as_json: bool) -> None:
    """Settings and counts of one list."""
    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain)
        row = {**admin.list_summary(s, ml), "policy": listroles.policy(s, ml),
               "archive": ml.archive,
               **admin.retry_setting(ml, ctx.config), **admin.protection(ml)}
    if as_json:
        click.echo(json.dumps(row, indent=2, ensure_ascii=False))
        return
    for key, value in row.items():
        click.echo(f"{key}: {_shown(value)}")


def _shown(value: Any) -> str:
    """A setting as an admin writes it, not as Python prints it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


@lists.command("delete")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def lists_delete(ctx: Context, address: str, yes: bool) -> None:
    """Delete a list with its members, threads and posts."""
    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain)
        if not yes and not click.confirm(
            f"Delete {ml.address} with all its members and posts?", err=True
        ):
            fail("not deleted")
        admin.delete_list(s, ml)
    click.echo(f"deleted {ml.address}")


# -- members -------------------------------------------------------------------------------
@main.group()
def members() -> None:
    """Add, remove, list, import and export members."""


mode_option = click.option("--mode", type=click.Choice(MODES), default="each",
                           show_default=True, help="How the member receives posts.")


@members.command("add")
@click.argument("list_address")
@click.argument("address")
@click.option("--name", default="", help="Display name.")
@mode_option
@pass_ctx
def members_add(ctx: Context, list_address: str, address: str, name: str, mode: str) -> None:
    """Add ADDRESS to LIST_ADDRESS."""
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        member = admin.add_member(s, ml, address, name, mode, now())
    click.echo(f"added {member.address} to {ml.address} ({member.mode})")


@members.command("remove")
@click.argument("list_address")
@click.argument("address")
@pass_ctx
def members_remove(ctx: Context, list_address: str, address: str) -> None:
    """Remove ADDRESS from LIST_ADDRESS."""
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        removed = admin.remove_member(s, ml, address, now())
    click.echo(f"removed {removed} from {ml.address}")


@members.command("list")
@click.argument("list_address")
@click.option("--bouncing", is_flag=True,
              help="Only members with a bounce score or disabled delivery, with their scores.")
@json_option
@pass_ctx
def members_list(ctx: Context, list_address: str, bouncing: bool, as_json: bool) -> None:
    """Members of a list."""
    from listserv.admin import outbox as deliveries

    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        if bouncing:
            rows = deliveries.bouncing_members(s, ml)
            columns = ["address", "score", "last_bounce", "delivery"]
        else:
            rows = [admin.member_row(m) for m in admin.members(s, ml)]
            columns = ["address", "name", "mode", "joined_at"]
    emit(rows, as_json, columns)


@members.command("set")
@click.argument("list_address")
@click.argument("address")
@click.option("--mode", type=click.Choice(MODES), default=None, help="New delivery mode.")
@click.option("--name", default=None, help="New display name.")
@click.option("--receive-own-posts/--no-receive-own-posts", default=None,
              help="Whether the member gets a copy of their own posts.")
@click.option("--enable", is_flag=True,
              help="Resume delivery disabled by bounces, with a clean bounce score.")
@click.option("--digest-hour", type=click.IntRange(-1, 23), default=None,
              help="The hour the member's digest arrives (-1: when the list's is sent).")
@click.option("--timezone", "zone", default=None,
              help="The member's time zone for --digest-hour (IANA name, e.g. Europe/Berlin).")
@pass_ctx
def members_set(ctx: Context, list_address: str, address: str, mode: str | None,
                name: str | None, receive_own_posts: bool | None, enable: bool,
                digest_hour: int | None, zone: str | None) -> None:
    """Change a member's settings."""
    from listserv.inbound import bounces as bouncing

    if (mode is None and name is None and receive_own_posts is None and not enable
            and digest_hour is None and zone is None):
        fail("nothing to change: give --mode, --name, --receive-own-posts, --enable,"
             " --digest-hour or --timezone")
    if zone is not None and not admin.valid_timezone(zone):
        fail(f"--timezone: unknown time zone {zone!r}")
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        member = admin.require_member(s, ml, address)
        if enable:
            bouncing.enable(member)
        if mode is not None:
            member.mode = mode
        if name is not None:
            member.display_name = name
        if receive_own_posts is not None:
            member.receive_own_posts = receive_own_posts
        if digest_hour is not None:
            member.digest_hour = None if digest_hour < 0 else digest_hour
        if zone is not None:
            member.timezone = zone
    click.echo(f"{member.address}: mode={member.mode} "
                   f"receive_own_posts={member.receive_own_posts} "
                   f"delivery={'disabled' if member.disabled_at else 'enabled'}")


@members.command("import")
@click.argument("list_address")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--skip-bad", is_flag=True,
              help="Add the good rows even if some are invalid (default: add none).")
@pass_ctx
def members_import(ctx: Context, list_address: str, csv_file: str, skip_bad: bool) -> None:
    """Add members from a CSV file of address,name,mode rows (UTF-8 or UTF-16). A file with
    an invalid row changes nothing unless --skip-bad; members already on the list are
    skipped."""
    try:
        rows, invalid = admin.read_csv(admin.decode_csv(Path(csv_file).read_bytes()))
    except admin.AdminError as exc:
        fail(f"{csv_file}: {exc}; nothing imported")
    except OSError as exc:
        fail(f"{csv_file}: cannot read: {exc.strerror}")
    for line in invalid:
        click.echo(f"invalid {line}", err=True)
    if invalid and not skip_bad:
        fail(f"{csv_file}: {len(invalid)} invalid rows, nothing imported (fix them, or "
             "use --skip-bad to add the good rows)")
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        if sys.stderr.isatty():
            with click.progressbar(length=len(rows), label="importing",
                                   file=sys.stderr) as bar:

                def advance(done: int, total: int) -> None:
                    bar.length = total  # rows already members are not inserted
                    bar.update(done - bar.pos)

                added, skipped = admin.import_members(s, ml, rows, now(), advance)
        else:
            added, skipped = admin.import_members(s, ml, rows, now(), _periodic_members())
    for line in skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(f"added {added}, skipped {len(skipped)}, invalid {len(invalid)}")
    if invalid:
        sys.exit(1)


PERIODIC_MEMBERS = 10_000  # members between two progress lines when not on a terminal


def _periodic_members() -> Callable[[int, int], None]:
    """Progress as a plain line every so many members, on stderr (a log, a cron mail)."""
    last = [0]

    def show(done: int, total: int) -> None:
        if done - last[0] >= PERIODIC_MEMBERS:
            last[0] = done - done % PERIODIC_MEMBERS
            click.echo(f"... {last[0]} of {total} members added", err=True)

    return show


@members.command("export")
@click.argument("list_address")
@pass_ctx
def members_export(ctx: Context, list_address: str) -> None:
    """Print members as CSV (address,name,mode), ready for import."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["address", "name", "mode"])
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        for m in admin.members(s, ml):
            writer.writerow([m.address, m.display_name, m.mode])
    click.echo(out.getvalue(), nl=False)


# -- reading -------------------------------------------------------------------------------
@main.command()
@click.argument("list_address")
@click.option("--limit", default=50, show_default=True, help="How many threads.")
@json_option
@pass_ctx
def threads(ctx: Context, list_address: str, limit: int, as_json: bool) -> None:
    """Threads of a list, most recently active first."""
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        rows = forum.thread_listing(s, ml, limit)
    emit(rows, as_json, ["id", "subject", "replies", "participants", "last_activity"])


@main.command()
@click.argument("thread_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def show(ctx: Context, thread_id: int, as_json: bool) -> None:
    """A thread as a reader reads it: posts in order, with author and date."""
    with ctx.session() as s:
        found = forum.thread_posts(s, thread_id)
        if found is None:
            fail(f"no such thread: {thread_id}")
        thread, posts = found
        rows = [
            {"id": p.id, "message_id": p.message_id, "author": p.author_address,
             "author_name": p.author_name, "subject": p.subject,
             "date": (p.date or p.received_at).isoformat(), "body": p.body}
            for p in posts
        ]
    if as_json:
        click.echo(json.dumps({"id": thread.id, "subject": thread.subject, "posts": rows},
                              indent=2, ensure_ascii=False))
        return
    click.echo(f"# {thread.subject}  ({len(rows)} {'post' if len(rows) == 1 else 'posts'})")
    for row in rows:
        who = f"{row['author_name']} <{row['author']}>" if row["author_name"] else row["author"]
        click.echo(f"\n--- {who}, {row['date']}\n")
        click.echo(row["body"].rstrip())


# -- outbox --------------------------------------------------------------------------------
@main.group(invoke_without_command=True)
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["queued", "deferred", "failed"]),
              help="Only deliveries in this state (repeatable; default: all unsent).")
@click.option("--limit", default=1000, show_default=True, help="How many deliveries.")
@json_option
@click.pass_context
def outbox(click_ctx: click.Context, statuses: tuple[str, ...], limit: int,
           as_json: bool) -> None:
    """Deliveries not yet sent: queued, deferred (next attempt, last error) and failed."""
    from listserv.admin import outbox as deliveries

    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(Context)
    with ctx.session() as s:
        rows = deliveries.pending(s, statuses or deliveries.UNSENT, limit)
        paused = deliveries.paused_line(s)
    if paused:
        click.echo(paused, err=as_json)
    emit(rows, as_json, ["id", "status", "recipient", "message", "attempts", "next_attempt",
                         "last_error"])


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Every deferred and failed delivery.")
@pass_ctx
def outbox_retry(ctx: Context, ids: tuple[int, ...], retry_all: bool) -> None:
    """Make deferred or failed deliveries due now (a running server sends them next)."""
    from listserv.admin import outbox as deliveries

    if retry_all == bool(ids):
        fail("give delivery IDs or --all (not both)")
    with ctx.session() as s:
        changed = deliveries.retry(s, None if retry_all else list(ids), now())
    if ids and changed < len(set(ids)):
        fail(f"{changed} of {len(set(ids))} retried: the others are not deferred or failed")
    click.echo(f"{changed} deliveries due now")


@outbox.command("pause")
@click.argument("address", required=False)
@pass_ctx
def outbox_pause(ctx: Context, address: str | None) -> None:
    """Stop sending posts, digests and notices (of one list, or all); nothing is lost."""
    from listserv.admin import outbox as deliveries

    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain) if address else None
        deliveries.pause(s, ml, now())
        click.echo(deliveries.paused_line(s))


@outbox.command("resume")
@click.argument("address", required=False)
@pass_ctx
def outbox_resume(ctx: Context, address: str | None) -> None:
    """Send again what was paused (one list, or everything)."""
    from listserv.admin import outbox as deliveries

    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain) if address else None
        deliveries.resume(s, ml)
        click.echo(deliveries.paused_line(s) or "sending resumed")


# -- membership and moderation ---------------------------------------------------------------
@lists.command("set")
@click.argument("address")
@click.option("--policy", type=click.Choice(POLICIES), default=None,
              help="Who may post: anyone, members, nobody without approval, or announcers.")
@click.option("--owner", "owners", multiple=True, metavar="ADDR", help="Add an owner.")
@click.option("--moderator", "moderators", multiple=True, metavar="ADDR",
              help="Add a moderator (held-message notices go to moderators, else owners).")
@click.option("--poster", "posters", multiple=True, metavar="ADDR",
              help="Allow ADDR to post to an announce list.")
@click.option("--remove", "removed", multiple=True, metavar="ADDR",
              help="Take away every role of ADDR on this list.")
@click.option("--max-retry-hours", "retry_hours", default=None, metavar="H|default",
              help="Hours a temporarily failing delivery of this list is retried before it "
                   "counts as a bounce (> 0); 'default' follows [delivery] max_age_hours.")
@click.option("--archive", type=click.Choice(ARCHIVES), default=None,
              help="Who may read the list on the web: its members once signed in "
                   "(the default), anyone, or nobody.")
@click.option("--probation", type=click.IntRange(min=0), default=None, metavar="N",
              help="Hold a new member's first N posts for a moderator (0: off).")
@click.option("--max-posts-per-day", "per_member", default=None, metavar="N|off",
              help="Hold a member's posts beyond N in the last 24 hours.")
@click.option("--max-list-posts-per-day", "per_list", default=None, metavar="N|off",
              help="Hold every post beyond N to this list in the last 24 hours.")
@click.option("--emergency", type=click.Choice(["on", "off"]), default=None,
              help="The emergency brake: hold every post of this list for moderation.")
@pass_ctx
def lists_set(ctx: Context, address: str, policy: str | None, owners: tuple[str, ...],
              moderators: tuple[str, ...], posters: tuple[str, ...],
              removed: tuple[str, ...], retry_hours: str | None, archive: str | None,
              probation: int | None, per_member: str | None, per_list: str | None,
              emergency: str | None) -> None:
    """Set the posting policy, the owners, moderators and approved posters, the maximum
    retry age, who may read the web archive, probation, daily limits and the emergency
    brake of a list."""
    changes = (policy, retry_hours, archive, probation, per_member, per_list, emergency)
    if all(c is None for c in changes) and not (owners or moderators or posters or removed):
        fail("nothing to change: give --policy, --owner, --moderator, --poster, --remove, "
             "--max-retry-hours, --archive, --probation, --max-posts-per-day, "
             "--max-list-posts-per-day or --emergency")
    try:
        hours = None if retry_hours is None else admin.parse_retry_hours(retry_hours)
        member_limit = (None if per_member is None
                        else admin.parse_limit("--max-posts-per-day", per_member))
        list_limit = (None if per_list is None
                      else admin.parse_limit("--max-list-posts-per-day", per_list))
    except admin.AdminError as exc:
        fail(str(exc))
    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain)
        for addr in removed:
            listroles.remove_role(s, ml, addr, None)
        for role, addrs in (("owner", owners), ("moderator", moderators), ("poster", posters)):
            for addr in addrs:
                listroles.add_role(s, ml, addr, role)
        if policy is not None:
            listroles.set_policy(s, ml, policy)
        if retry_hours is not None:
            ml.max_retry_hours = hours
        if archive is not None:
            ml.archive = archive
        if probation is not None:
            ml.probation = probation
        if per_member is not None:
            ml.max_posts_per_day = member_limit
        if per_list is not None:
            ml.max_list_posts_per_day = list_limit
        if emergency is not None:
            ml.emergency = emergency == "on"
        retry = admin.retry_setting(ml, ctx.config)
        default = " (default)" if retry["max_retry_hours_default"] else ""
        click.echo(f"{ml.address}: policy={listroles.policy(s, ml)} "
                   f"max_retry_hours={retry['max_retry_hours']:g}{default}")
        if archive is not None:
            click.echo(f"{ml.address}: archive={ml.archive}")
        if any(c is not None for c in (probation, per_member, per_list, emergency)):
            click.echo(f"{ml.address}: " + " ".join(
                f"{k}={'off' if v is None else v}" for k, v in admin.protection(ml).items()))
    if emergency == "on":
        click.echo("emergency brake on: every post to this list is held for moderation")


@archive.command("reindex")
@click.argument("list_address", metavar="LIST")
@pass_ctx
def archive_reindex(ctx: Context, list_address: str) -> None:
    """Rebuild the search index of LIST from its stored posts (on SQLite: of every list)."""
    from listserv.store import search

    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        indexed = search.reindex(s.connection(), ml.id)
    click.echo(f"{ml.address}: search index rebuilt, {indexed} posts indexed")


@lists.command("roles")
@click.argument("address")
@json_option
@pass_ctx
def lists_roles(ctx: Context, address: str, as_json: bool) -> None:
    """Owners, moderators, approved posters and moderated members of a list."""
    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain)
        rows = listroles.role_rows(s, ml)
    emit(rows, as_json, ["address", "role"])


@members.command("moderate")
@click.argument("list_address")
@click.argument("address")
@click.option("--off", is_flag=True, help="Let the member's posts through again.")
@pass_ctx
def members_moderate(ctx: Context, list_address: str, address: str, off: bool) -> None:
    """Hold every post of one member for a moderator (or stop with --off)."""
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        member = admin.require_member(s, ml, address)
        if off:
            listroles.remove_role(s, ml, member.address, "moderated")
        else:
            listroles.add_role(s, ml, member.address, "moderated")
        click.echo(f"{member.address}: moderated={'no' if off else 'yes'}")


def _thread_wish(ctx: Context, list_address: str, address: str, thread_id: int,
                 wish: str | None) -> None:
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        member = admin.require_member(s, ml, address)
        admin.set_thread_wish(s, ml, member, thread_id, wish, now())
        click.echo(f"{member.address}: thread {thread_id} {wish or 'as the delivery mode'}")


@members.command("mute")
@click.argument("list_address")
@click.argument("address")
@click.argument("thread_id", type=int)
@click.option("--off", is_flag=True, help="Receive the thread again.")
@pass_ctx
def members_mute(ctx: Context, list_address: str, address: str, thread_id: int,
                 off: bool) -> None:
    """Send a member none of one thread's posts (or again with --off)."""
    _thread_wish(ctx, list_address, address, thread_id, None if off else "mute")


@members.command("follow")
@click.argument("list_address")
@click.argument("address")
@click.argument("thread_id", type=int)
@click.option("--off", is_flag=True, help="Back to the member's delivery mode.")
@pass_ctx
def members_follow(ctx: Context, list_address: str, address: str, thread_id: int,
                   off: bool) -> None:
    """Send one thread's posts one by one to a member reading a digest or no mail."""
    _thread_wish(ctx, list_address, address, thread_id, None if off else "follow")


@main.group()
def held() -> None:
    """Messages waiting for a moderator."""


@held.command("list")
@click.argument("list_address")
@json_option
@pass_ctx
def held_list(ctx: Context, list_address: str, as_json: bool) -> None:
    """Held messages of a list, oldest first."""
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        rows = [moderation.held_row(h) for h in moderation.held_messages(s, ml)]
    emit(rows, as_json, ["id", "sender", "subject", "reason", "received_at"])


@held.command("show")
@click.argument("held_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def held_show(ctx: Context, held_id: int, as_json: bool) -> None:
    """One held message: why it is held and its text."""
    with ctx.session() as s:
        held = moderation.require_held(s, held_id)
        row = {**moderation.held_row(held), "text": moderation.held_text(held, ctx.config)}
    if as_json:
        click.echo(json.dumps(row, indent=2, ensure_ascii=False))
        return
    for key in ("id", "sender", "subject", "reason", "received_at", "message_id"):
        click.echo(f"{key}: {row[key]}")
    click.echo("")
    click.echo(row["text"].rstrip())


def _decide(ctx: Context, held_id: int, verb: str, reason: str = "",
            trust: bool = False) -> None:
    from listserv.templating import environment

    with ctx.session() as s:
        held = moderation.require_held(s, held_id)
        if trust and not moderation.trust(s, held):
            fail(f"held message {held_id}: {held.sender} is not a member, so there is no "
                 "probation to end")
        done = moderation.decide(s, ctx.config, environment(ctx.config.base_dir), held, verb,
                                 reason, now())
    click.echo(done)


@held.command("approve")
@click.argument("held_id", type=int)
@click.option("--trust", is_flag=True,
              help="Also end the sender's probation: their next posts go through.")
@pass_ctx
def held_approve(ctx: Context, held_id: int, trust: bool) -> None:
    """Deliver a held message to the list and store it like any post."""
    _decide(ctx, held_id, "approve", trust=trust)


@held.command("reject")
@click.argument("held_id", type=int)
@click.option("--reason", default="", help="Told to the sender.")
@pass_ctx
def held_reject(ctx: Context, held_id: int, reason: str) -> None:
    """Refuse a held message; the sender is told, with the reason."""
    _decide(ctx, held_id, "reject", reason)


@held.command("discard")
@click.argument("held_id", type=int)
@pass_ctx
def held_discard(ctx: Context, held_id: int) -> None:
    """Drop a held message without telling anyone (spam)."""
    _decide(ctx, held_id, "discard")


@held.command("expire")
@pass_ctx
def held_expire(ctx: Context) -> None:
    """Discard held messages older than [moderation] held_max_days, telling their senders."""
    from listserv.templating import environment

    db = ctx.database()
    try:
        db.create_schema()
        count = moderation.expire(db, ctx.config, environment(ctx.config.base_dir), now())
    except SQLAlchemyError as exc:
        fail(database_error(exc))
    finally:
        db.dispose()
    click.echo(f"discarded {count} held messages")


# -- digest --------------------------------------------------------------------------------
@main.group()
def digest() -> None:
    """Preview and send daily digests."""


date_option = click.option(
    "--date", "day", default=None, metavar="YYYY-MM-DD",
    help="The digest of this morning (posts of the 24 hours before the digest hour). "
         "Default: the latest period that has ended.",
)


def _period(ml: MailingList, day: str | None, at: datetime) -> Period:
    """The period named by --date, else the latest one that has ended."""
    if day is None:
        return period(latest_due(at, ml.digest_hour, ml.timezone), ml.digest_hour, ml.timezone)
    try:
        return period(parse_day(day), ml.digest_hour, ml.timezone)
    except ValueError as exc:
        fail(str(exc))


@digest.command("preview")
@click.argument("list_address")
@date_option
@pass_ctx
def digest_preview(ctx: Context, list_address: str, day: str | None) -> None:
    """Print the plain text of a digest without sending it."""
    from listserv.schedule import digests
    from listserv.templating import environment

    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        per = _period(ml, day, now())
        content = digests.content(s, ml, per)
        if content is None:
            click.echo(f"no posts in the digest period {per.label} of {ml.address}; "
                       "no digest would be sent")
            return
        text = digests.render_text(environment(ctx.config.base_dir), content)
    click.echo(f"Subject: {content.subject}\n")
    click.echo(text.rstrip("\n"))


@digest.command("send")
@click.argument("list_address")
@date_option
@click.option("--force", is_flag=True, help="Send again even if this digest was sent.")
@pass_ctx
def digest_send(ctx: Context, list_address: str, day: str | None, force: bool) -> None:
    """Queue a digest for every digest reader now (once per period unless --force)."""
    from listserv.schedule import digests
    from listserv.templating import environment

    at = now()
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        per = _period(ml, day, at)
        if per.end > at and not force:
            fail(f"the digest period {per.label} of {ml.address} ends at "
                 f"{per.end.isoformat()}; use --force to send what it has so far")
        opened = digests.send(s, ctx.config, environment(ctx.config.base_dir), ml, per, at,
                              force)
    if opened is None:
        click.echo(f"digest {per.label} of {ml.address} was already sent "
                   "(use --force to send it again)")
    elif not opened.posts:
        click.echo(f"digest {per.label} of {ml.address}: no posts, nothing sent")
    else:
        readers = "reader" if opened.recipients == 1 else "readers"
        click.echo(f"digest {per.label} of {ml.address}: {opened.posts} posts, "
                   f"queued for {opened.recipients} {readers}")


@digest.command("list")
@click.argument("list_address")
@click.option("--limit", default=30, show_default=True, help="How many digests.")
@json_option
@pass_ctx
def digest_list(ctx: Context, list_address: str, limit: int, as_json: bool) -> None:
    """Digests of a list, newest first: posts, readers queued, deliveries sent."""
    from listserv.schedule import digests

    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        rows = digests.history(s, ml, limit)
    emit(rows, as_json, ["period", "serial", "posts", "recipients", "sent", "opened_at"])


# -- dkim ----------------------------------------------------------------------------------
@main.group()
def dkim() -> None:
    """DKIM keys for signing everything listserv sends."""


@dkim.command("keygen")
@click.option("--selector", required=True, help="E.g. ls2026; the key is published under it.")
@click.option("--domain", required=True, help="The signing domain, e.g. lists.example.org.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Key file (default: [dkim] private_key_file when set, else "
                   "dkim/SELECTOR.DOMAIN.pem next to the config).")
@click.option("--force", is_flag=True,
              help="Replace an existing key file (mail signed with it stops verifying once "
                   "its DNS record changes).")
@pass_ctx
def dkim_keygen(ctx: Context, selector: str, domain: str, out: str | None,
                force: bool) -> None:
    """Write a 2048-bit private key and print the DNS TXT record to publish."""
    from listserv.core.addresses import try_normalize
    from listserv.outbound import keys, signing

    if not selector.replace("-", "").replace("_", "").isalnum() or "." in selector:
        fail(f"invalid selector {selector!r}: use letters, digits, '-' and '_'")
    if try_normalize(f"x@{domain}") is None:
        fail(f"invalid domain {domain!r}")
    config = ctx.config
    if out:
        path = Path(out)
    elif config.dkim.private_key_file:
        path = config.dkim_key_path
    else:
        path = config.base_dir / "dkim" / f"{selector}.{domain}.pem"
    pem, der = keys.generate()
    try:
        keys.write_private(path, pem, replace=force)
    except FileExistsError:
        fail(f"{path} exists; keep it, choose another --out, or replace it with --force")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    click.echo(f"wrote {path}\n")
    click.echo("Publish this DNS record:\n")
    click.echo(signing.dns_record(selector, domain, der))
    click.echo("\nThen set in the config:\n")
    click.echo(f'[dkim]\nselector = "{selector}"\ndomain = "{domain}"\n'
               f'private_key_file = "{path}"')


# -- report --------------------------------------------------------------------------------
@main.command()
@click.argument("list_address")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day (default: 6 days before --until).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day (default: today in the list's time zone).")
@json_option
@pass_ctx
def report(ctx: Context, list_address: str, since: datetime | None, until: datetime | None,
           as_json: bool) -> None:
    """Per day: posts, deliveries, deferrals, bounces (hard, soft, policy), complaints,
    unsubscribes, personal data exports and people forgotten on request. Policy bounces
    (x.7.x) are the receiver's rules, not a dead mailbox."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from listserv.admin import reports
    from listserv.core import stats

    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        last = until.date() if until else now().astimezone(ZoneInfo(ml.timezone)).date()
        first = since.date() if since else last - timedelta(days=6)
        if first > last:
            fail("--since is after --until")
        if (last - first).days > 366:
            fail("at most 366 days at once")
        rows = reports.list_report(s, ml, first, last)
    emit(rows, as_json, ["day", *stats.COLUMNS])


main.add_command(archive)
main.add_command(thread)
members.add_command(members_forget)
members.add_command(members_export_data)
