"""Moving posts between threads: the queries shared by imports (a reply met before its
parent) and thread surgery. A thread left empty is deleted; counts and dates follow."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, func, select, update

from listserv.store.models import Post, Thread

_posts, _threads = Post.__table__, Thread.__table__


def subtree(conn: Connection, post_id: int) -> list[int]:
    """This post and every reply below it (by parent), within its thread."""
    thread_id = conn.scalar(select(_posts.c.thread_id).where(_posts.c.id == post_id))
    children: dict[int | None, list[int]] = {}
    for pid, parent in conn.execute(
        select(_posts.c.id, _posts.c.parent_id).where(_posts.c.thread_id == thread_id)
    ):
        children.setdefault(parent, []).append(pid)
    found, todo = [], [post_id]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def move(conn: Connection, post_ids: list[int], thread_id: int) -> set[int]:
    """Put these posts in `thread_id`; the threads they left (recount them)."""
    left = set(conn.scalars(select(_posts.c.thread_id).where(_posts.c.id.in_(post_ids))))
    conn.execute(update(_posts).where(_posts.c.id.in_(post_ids)).values(thread_id=thread_id))
    return left - {thread_id}


def recount(conn: Connection, thread_ids: Iterable[int]) -> None:
    """Set the post count and first and last dates of these threads from their posts;
    a thread with no post left is deleted."""
    ids = list(thread_ids)
    if not ids:
        return
    facts = {
        tid: (n, first, last)
        for tid, n, first, last in conn.execute(
            select(
                _posts.c.thread_id,
                func.count(),
                func.min(_posts.c.received_at),
                func.max(_posts.c.received_at),
            )
            .where(_posts.c.thread_id.in_(ids))
            .group_by(_posts.c.thread_id)
        )
    }
    empty = [tid for tid in ids if tid not in facts]
    if empty:
        conn.execute(delete(_threads).where(_threads.c.id.in_(empty)))
    for tid, (n, first, last) in facts.items():
        conn.execute(
            update(_threads)
            .where(_threads.c.id == tid)
            .values(post_count=n, started_at=first, last_activity=last)
        )
