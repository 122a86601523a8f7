"""`listserv digest ...`: preview, send and list digests."""

from __future__ import annotations

from datetime import datetime

import click

from listserv.admin import lists as admin
from listserv.cli.common import (
    Context,
    emit,
    fail,
    json_option,
    now,
    pass_ctx,
)
from listserv.core.digest import Period, latest_due, parse_day, period
from listserv.store.models import MailingList


@click.group()
def digest() -> None:
    """Preview and send daily digests."""


date_option = click.option(
    "--date",
    "day",
    default=None,
    metavar="YYYY-MM-DD",
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

    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        per = _period(ml, day, now())
        content = digests.content(s, ml, per)
        if content is None:
            click.echo(
                f"no posts in the digest period {per.label} of {ml.address}; "
                "no digest would be sent"
            )
            return
        text = digests.render_text(ctx.templates, content)
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

    at = now()
    with ctx.session() as s:
        ml = admin.require_list(s, list_address, ctx.config.lists.domain)
        per = _period(ml, day, at)
        if per.end > at and not force:
            fail(
                f"the digest period {per.label} of {ml.address} ends at "
                f"{per.end.isoformat()}; use --force to send what it has so far"
            )
        opened = digests.send(s, ctx.config, ctx.templates, ml, per, at, force)
    if opened is None:
        click.echo(
            f"digest {per.label} of {ml.address} was already sent (use --force to send it again)"
        )
    elif not opened.posts:
        click.echo(f"digest {per.label} of {ml.address}: no posts, nothing sent")
    else:
        readers = "reader" if opened.recipients == 1 else "readers"
        click.echo(
            f"digest {per.label} of {ml.address}: {opened.posts} posts, "
            f"queued for {opened.recipients} {readers}"
        )


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
