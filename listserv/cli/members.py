"""`listserv members ...`: add, remove, change, import and export members."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from listserv.admin import lists as admin
from listserv.admin import settings as settings_admin
from listserv.cli.common import (
    Context,
    emit,
    fail,
    json_option,
    now,
    pass_ctx,
)
from listserv.cli.personal import members_export_data, members_forget
from listserv.store import roles as listroles
from listserv.store.models import MODES


@click.group()
def members() -> None:
    """Add, remove, list, import and export members."""


mode_option = click.option(
    "--mode",
    type=click.Choice(MODES),
    default="each",
    show_default=True,
    help="How the member receives posts.",
)


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
@click.option(
    "--bouncing",
    is_flag=True,
    help="Only members with a bounce score or disabled delivery, with their scores.",
)
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
@click.option(
    "--receive-own-posts/--no-receive-own-posts",
    default=None,
    help="Whether the member gets a copy of their own posts.",
)
@click.option(
    "--enable", is_flag=True, help="Resume delivery disabled by bounces, with a clean bounce score."
)
@click.option(
    "--digest-hour",
    type=click.IntRange(-1, 23),
    default=None,
    help="The hour the member's digest arrives (-1: when the list's is sent).",
)
@click.option(
    "--timezone",
    "zone",
    default=None,
    help="The member's time zone for --digest-hour (IANA name, e.g. Europe/Berlin).",
)
@pass_ctx
def members_set(
    ctx: Context,
    list_address: str,
    address: str,
    mode: str | None,
    name: str | None,
    receive_own_posts: bool | None,
    enable: bool,
    digest_hour: int | None,
    zone: str | None,
) -> None:
    """Change a member's settings."""
    changes = settings_admin.MemberChanges(
        mode=mode,
        name=name,
        receive_own_posts=receive_own_posts,
        enable=enable,
        digest_hour=digest_hour,
        timezone=zone,
    )
    if changes.empty():
        fail(
            "nothing to change: give --mode, --name, --receive-own-posts, --enable,"
            " --digest-hour or --timezone"
        )
    if zone is not None and not admin.valid_timezone(zone):
        fail(f"--timezone: unknown time zone {zone!r}")
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        member = admin.require_member(s, ml, address)
        settings_admin.change_member(member, changes)
    click.echo(
        f"{member.address}: mode={member.mode} "
        f"receive_own_posts={member.receive_own_posts} "
        f"delivery={'disabled' if member.disabled_at else 'enabled'}"
    )


@members.command("import")
@click.argument("list_address")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Add the good rows even if some are invalid (default: add none).",
)
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
        fail(
            f"{csv_file}: {len(invalid)} invalid rows, nothing imported (fix them, or "
            "use --skip-bad to add the good rows)"
        )
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
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        text = settings_admin.export_csv(s, ml)
    click.echo(text, nl=False)


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


def _thread_wish(
    ctx: Context, list_address: str, address: str, thread_id: int, wish: str | None
) -> None:
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
def members_mute(ctx: Context, list_address: str, address: str, thread_id: int, off: bool) -> None:
    """Send a member none of one thread's posts (or again with --off)."""
    _thread_wish(ctx, list_address, address, thread_id, None if off else "mute")


@members.command("follow")
@click.argument("list_address")
@click.argument("address")
@click.argument("thread_id", type=int)
@click.option("--off", is_flag=True, help="Back to the member's delivery mode.")
@pass_ctx
def members_follow(
    ctx: Context, list_address: str, address: str, thread_id: int, off: bool
) -> None:
    """Send one thread's posts one by one to a member reading a digest or no mail."""
    _thread_wish(ctx, list_address, address, thread_id, None if off else "follow")


# A member's rights over their data live in their own module (the admin side is long).
members.add_command(members_forget)
members.add_command(members_export_data)
