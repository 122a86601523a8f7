"""`listserv thread move|merge|split|history`: mend threading, each act recorded.

Registered by the main command module; imports nothing of it.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from listserv.admin import surgery
from listserv.cli.common import Context, opened

by_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--by", "actor", default=None, help="Who does it, for the history (default: your login)."
)


@click.group()
def thread() -> None:
    """Move posts between threads, merge threads, split one; see a thread's history."""


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


@thread.command("move")
@click.argument("post_id", type=int)
@click.option("--to", "to_thread", type=int, required=True, help="The thread it belongs in.")
@by_option
@click.pass_obj
def move(ctx: Context, post_id: int, to_thread: int, actor: str | None) -> None:
    """Move a post, with the replies below it, into another thread."""
    with opened(ctx, surgery.SurgeryError) as db:
        moved = surgery.move(db, post_id, to_thread, _actor(actor), datetime.now(UTC))
    click.echo(f"moved {moved} posts into thread {to_thread}")


@thread.command("merge")
@click.argument("thread_id", type=int)
@click.option("--into", type=int, required=True, help="The thread that stays.")
@by_option
@click.pass_obj
def merge(ctx: Context, thread_id: int, into: int, actor: str | None) -> None:
    """Merge a thread into another one; the first disappears."""
    with opened(ctx, surgery.SurgeryError) as db:
        moved = surgery.merge(db, thread_id, into, _actor(actor), datetime.now(UTC))
    click.echo(f"moved {moved} posts into thread {into}; thread {thread_id} is gone")


@thread.command("split")
@click.argument("post_id", type=int)
@click.option("--subject", default=None, help="The new thread's subject (default: the post's).")
@by_option
@click.pass_obj
def split(ctx: Context, post_id: int, subject: str | None, actor: str | None) -> None:
    """Make a post and its replies a new thread."""
    with opened(ctx, surgery.SurgeryError) as db:
        new_id = surgery.split(db, post_id, subject, _actor(actor), datetime.now(UTC))
    click.echo(f"thread {new_id} started by post {post_id}")


@thread.command("history")
@click.argument("thread_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history(ctx: Context, thread_id: int, as_json: bool) -> None:
    """Who moved posts into or out of a thread, and when."""
    with opened(ctx, surgery.SurgeryError) as db:
        rows = surgery.history(db, thread_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("(none)")
    for row in rows:
        click.echo(
            f"{row['at']}  {row['by']}  {row['action']}  {row['posts']} posts from "
            f"thread {row['from_thread']} to {row['to_thread']}: {row['what']}"
        )
