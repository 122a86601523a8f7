"""`listserv held ...`: messages waiting for a moderator."""

from __future__ import annotations

import json

import click
from sqlalchemy.exc import SQLAlchemyError

from listserv.admin import lists as admin
from listserv.cli.common import (
    Context,
    database_error,
    emit,
    fail,
    json_option,
    now,
    pass_ctx,
)
from listserv.inbound import moderation


@click.group()
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
    for key in ("id", "sender", "envelope_sender", "subject", "reason", "received_at",
                "message_id"):
        click.echo(f"{key}: {row[key]}")
    click.echo("")
    click.echo(row["text"].rstrip())


def _decide(ctx: Context, held_id: int, verb: str, reason: str = "", trust: bool = False) -> None:
    with ctx.session() as s:
        held = moderation.require_held(s, held_id)
        if trust and not moderation.trust(s, held):
            fail(
                f"held message {held_id}: {held.sender} is not a member, so there is no "
                "probation to end"
            )
        done = moderation.decide(s, ctx.config, ctx.templates, held, verb, reason, now())
    click.echo(done)


@held.command("approve")
@click.argument("held_id", type=int)
@click.option(
    "--trust", is_flag=True, help="Also end the sender's probation: their next posts go through."
)
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
    db = ctx.database()
    try:
        db.check_schema()
        count = moderation.expire(db, ctx.config, ctx.templates, now())
    except SQLAlchemyError as exc:
        fail(database_error(exc))
    finally:
        db.dispose()
    click.echo(f"discarded {count} held messages")
