"""Reading the forum: thread listings and a thread as a reader reads it.

Each read is a fixed number of queries, whatever the number of threads or posts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.store.models import MailingList, Post, Thread


def thread_listing(session: Session, ml: MailingList, limit: int = 50) -> list[dict[str, Any]]:
    """The most recently active threads, with reply count and who took part."""
    rows = session.execute(
        select(Thread)
        .where(Thread.list_id == ml.id)
        .order_by(Thread.last_activity.desc(), Thread.id.desc())
        .limit(limit)
    ).scalars().all()
    ids = [t.id for t in rows]
    people: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        authors = session.execute(
            select(Post.thread_id, Post.author_address, func.min(Post.id))
            .where(Post.thread_id.in_(ids))
            .group_by(Post.thread_id, Post.author_address)
            .order_by(func.min(Post.id))
        )
        for thread_id, address, _ in authors:
            people[thread_id].append(address)
    return [
        {
            "id": t.id,
            "subject": t.subject,
            "posts": t.post_count,
            "replies": t.post_count - 1,
            "participants": people[t.id],
            "started_at": t.started_at.isoformat(),
            "last_activity": t.last_activity.isoformat(),
        }
        for t in rows
    ]


def thread_posts(session: Session, thread_id: int) -> tuple[Thread, list[Post]] | None:
    thread = session.get(Thread, thread_id)
    if thread is None:
        return None
    posts = session.scalars(
        select(Post).where(Post.thread_id == thread_id).order_by(Post.id)
    ).all()
    return thread, list(posts)


def post_row(post: Post) -> dict[str, Any]:
    """One post of `show`: who wrote it, when, and its text."""
    return {
        "id": post.id,
        "message_id": post.message_id,
        "author": post.author_address,
        "author_name": post.author_name,
        "subject": post.subject,
        "date": (post.date or post.received_at).isoformat(),
        "body": post.body,
    }
