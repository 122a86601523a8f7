"""`listserv threads` and `show`: read a list as its members do."""

from __future__ import annotations

import json

import click

from listserv.admin import lists as admin
from listserv.admin import threads as forum
from listserv.cli.common import (
    Context,
    emit,
    fail,
    json_option,
    pass_ctx,
)


@click.command()
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


@click.command()
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
        rows = [forum.post_row(p) for p in posts]
    if as_json:
        click.echo(
            json.dumps(
                {"id": thread.id, "subject": thread.subject, "posts": rows},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    click.echo(f"# {thread.subject}  ({len(rows)} {'post' if len(rows) == 1 else 'posts'})")
    for row in rows:
        who = f"{row['author_name']} <{row['author']}>" if row["author_name"] else row["author"]
        click.echo(f"\n--- {who}, {row['date']}\n")
        click.echo(row["body"].rstrip())
