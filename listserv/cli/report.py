"""`listserv report`: a list's daily figures."""

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


@click.command()
@click.argument("list_address")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="First day (default: 6 days before --until).",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Last day (default: today in the list's time zone).",
)
@json_option
@pass_ctx
def report(
    ctx: Context, list_address: str, since: datetime | None, until: datetime | None, as_json: bool
) -> None:
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
