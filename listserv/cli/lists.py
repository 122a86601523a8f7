"""`listserv lists ...`: create, show, change and delete lists."""

from __future__ import annotations

import json
from typing import Any

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
from listserv.store import roles as listroles
from listserv.store.models import ARCHIVES, POLICIES


@click.group()
def lists() -> None:
    """Create, show and delete lists."""


@lists.command("create")
@click.argument("address")
@click.option("--title", required=True, help="Shown in From, List-Id and digests.")
@click.option("--subject-prefix", default="", help='E.g. "[Living with ALS]".')
@click.option("--description", default="", help="What the list is for.")
@click.option(
    "--from-rewrite",
    type=click.Choice(["always", "alias", "never"]),
    default="always",
    show_default=True,
    help="Send posts From the list (DMARC-safe), From the author's private alias "
    "on the list (DMARC-safe, replies to it reach the author only), or keep "
    "the author's From.",
)
@pass_ctx
def lists_create(
    ctx: Context, address: str, title: str, subject_prefix: str, description: str, from_rewrite: str
) -> None:
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
        rows = [
            admin.list_summary(s, ml)
            for ml in s.scalars(select(MailingList).order_by(MailingList.address))
        ]
    emit(rows, as_json, ["address", "title", "members"])


@lists.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def lists_show(ctx: Context, address: str, as_json: bool) -> None:
    """Settings and counts of one list."""
    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain)
        row = {
            **admin.list_summary(s, ml),
            "policy": listroles.policy(s, ml),
            "archive": ml.archive,
            **admin.retry_setting(ml, ctx.config),
            **admin.protection(ml),
        }
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


@lists.command("set")
@click.argument("address")
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default=None,
    help="Who may post: anyone, members, nobody without approval, or announcers.",
)
@click.option("--owner", "owners", multiple=True, metavar="ADDR", help="Add an owner.")
@click.option(
    "--moderator",
    "moderators",
    multiple=True,
    metavar="ADDR",
    help="Add a moderator (held-message notices go to moderators, else owners).",
)
@click.option(
    "--poster",
    "posters",
    multiple=True,
    metavar="ADDR",
    help="Allow ADDR to post to an announce list.",
)
@click.option(
    "--remove",
    "removed",
    multiple=True,
    metavar="ADDR",
    help="Take away every role of ADDR on this list.",
)
@click.option(
    "--max-retry-hours",
    "retry_hours",
    default=None,
    metavar="H|default",
    help="Hours a temporarily failing delivery of this list is retried before it "
    "counts as a bounce (> 0); 'default' follows [delivery] max_age_hours.",
)
@click.option(
    "--archive",
    type=click.Choice(ARCHIVES),
    default=None,
    help="Who may read the list on the web: its members once signed in "
    "(the default), anyone, or nobody.",
)
@click.option(
    "--probation",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Hold a new member's first N posts for a moderator (0: off).",
)
@click.option(
    "--max-posts-per-day",
    "per_member",
    default=None,
    metavar="N|off",
    help="Hold a member's posts beyond N in the last 24 hours.",
)
@click.option(
    "--max-list-posts-per-day",
    "per_list",
    default=None,
    metavar="N|off",
    help="Hold every post beyond N to this list in the last 24 hours.",
)
@click.option(
    "--emergency",
    type=click.Choice(["on", "off"]),
    default=None,
    help="The emergency brake: hold every post of this list for moderation.",
)
@pass_ctx
def lists_set(
    ctx: Context,
    address: str,
    policy: str | None,
    owners: tuple[str, ...],
    moderators: tuple[str, ...],
    posters: tuple[str, ...],
    removed: tuple[str, ...],
    retry_hours: str | None,
    archive: str | None,
    probation: int | None,
    per_member: str | None,
    per_list: str | None,
    emergency: str | None,
) -> None:
    """Set the posting policy, the owners, moderators and approved posters, the maximum
    retry age, who may read the web archive, probation, daily limits and the emergency
    brake of a list."""
    changes = (policy, retry_hours, archive, probation, per_member, per_list, emergency)
    if all(c is None for c in changes) and not (owners or moderators or posters or removed):
        fail(
            "nothing to change: give --policy, --owner, --moderator, --poster, --remove, "
            "--max-retry-hours, --archive, --probation, --max-posts-per-day, "
            "--max-list-posts-per-day or --emergency"
        )
    given = {
        "max_retry_hours": retry_hours,
        "archive": archive,
        "probation": probation,
        "max_posts_per_day": per_member,
        "max_list_posts_per_day": per_list,
        "emergency": emergency,
    }
    try:
        settings = settings_admin.list_settings(given)
    except admin.AdminError as exc:
        fail(str(exc))
    roles = [
        (role, addr)
        for role, addrs in (("owner", owners), ("moderator", moderators), ("poster", posters))
        for addr in addrs
    ]
    with ctx.session() as s:
        ml = admin.require_list(s, address, ctx.config.lists.domain)
        settings_admin.change_list(s, ml, policy, roles, removed, settings)
        retry = admin.retry_setting(ml, ctx.config)
        default = " (default)" if retry["max_retry_hours_default"] else ""
        click.echo(
            f"{ml.address}: policy={listroles.policy(s, ml)} "
            f"max_retry_hours={retry['max_retry_hours']:g}{default}"
        )
        if archive is not None:
            click.echo(f"{ml.address}: archive={ml.archive}")
        if any(c is not None for c in (probation, per_member, per_list, emergency)):
            click.echo(
                f"{ml.address}: "
                + " ".join(
                    f"{k}={'off' if v is None else v}" for k, v in admin.protection(ml).items()
                )
            )
    if emergency == "on":
        click.echo("emergency brake on: every post to this list is held for moderation")


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
