"""`listserv outbox ...`: deliveries not yet sent; retry, pause, resume."""

from __future__ import annotations

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


@click.group(invoke_without_command=True)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "deferred", "failed"]),
    help="Only deliveries in this state (repeatable; default: all unsent).",
)
@click.option("--limit", default=1000, show_default=True, help="How many deliveries.")
@json_option
@click.pass_context
def outbox(click_ctx: click.Context, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
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
    emit(
        rows,
        as_json,
        ["id", "status", "recipient", "message", "attempts", "next_attempt", "last_error"],
    )


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
