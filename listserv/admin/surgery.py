"""Thread surgery: an admin mends threading that went wrong, and each act is recorded.

A post moves with the replies below it; a thread left empty is deleted. Replies that
arrive later find their parent by Message-ID wherever it now is, so they follow it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, update

from listserv.core import threads
from listserv.store import threading
from listserv.store.database import Database
from listserv.store.models import MailingList, Post, Thread, ThreadEvent


class SurgeryError(Exception):
    """An act that names no such post or thread, or threads of two lists: one CLI line."""


def move(db: Database, post_id: int, to_thread: int, actor: str, now: datetime) -> int:
    """Move a post and its replies into another thread of its list; how many moved."""
    with db.transaction() as conn:
        post = _post(conn, post_id)
        target = _thread(conn, to_thread)
        if target.list_id != post.list_id:
            raise SurgeryError(f"thread {to_thread} is on another list than post {post_id}")
        if post.thread_id == to_thread:
            raise SurgeryError(f"post {post_id} is in thread {to_thread} already")
        moved = threading.subtree(conn, post_id)
        conn.execute(update(Post).where(Post.id == post_id).values(parent_id=None))
        left = threading.move(conn, moved, to_thread)
        threading.recount(conn, left | {to_thread})
        _record(
            conn,
            post.list_id,
            to_thread,
            post.thread_id,
            "move",
            len(moved),
            f"post {post_id} and its replies",
            actor,
            now,
        )
        return len(moved)


def merge(db: Database, thread_id: int, into: int, actor: str, now: datetime) -> int:
    """Put every post of a thread into another one, which it then joins; how many moved."""
    with db.transaction() as conn:
        source, target = _thread(conn, thread_id), _thread(conn, into)
        if source.list_id != target.list_id:
            raise SurgeryError(f"threads {thread_id} and {into} are on different lists")
        if thread_id == into:
            raise SurgeryError("a thread cannot be merged into itself")
        moved = list(conn.scalars(select(Post.id).where(Post.thread_id == thread_id)))
        threading.recount(conn, threading.move(conn, moved, into) | {into})
        _record(
            conn,
            source.list_id,
            into,
            thread_id,
            "merge",
            len(moved),
            f"thread {thread_id} ({source.subject})",
            actor,
            now,
        )
        return len(moved)


def split(db: Database, post_id: int, subject: str | None, actor: str, now: datetime) -> int:
    """Make a post and its replies a thread of their own; the new thread's id."""
    with db.transaction() as conn:
        post = _post(conn, post_id)
        prefix = (
            conn.scalar(select(MailingList.subject_prefix).where(MailingList.id == post.list_id))
            or ""
        )
        title = subject or threads.split_markers(post.subject, prefix)[1] or "(no subject)"
        new_id = conn.execute(
            Thread.__table__.insert()
            .values(
                list_id=post.list_id,
                subject=title,
                subject_key=threads.subject_key(title, prefix),
                started_at=post.received_at,
                last_activity=post.received_at,
                post_count=0,
            )
            .returning(Thread.id)
        ).scalar_one()
        moved = threading.subtree(conn, post_id)
        conn.execute(update(Post).where(Post.id == post_id).values(parent_id=None))
        threading.recount(conn, threading.move(conn, moved, new_id) | {new_id})
        _record(
            conn,
            post.list_id,
            new_id,
            post.thread_id,
            "split",
            len(moved),
            f'post {post_id} and its replies, as "{title}"',
            actor,
            now,
        )
        return new_id


def history(db: Database, thread_id: int) -> list[dict[str, Any]]:
    """Every act that moved posts into or out of this thread, oldest first."""
    with db.read() as session:
        events = session.scalars(
            select(ThreadEvent)
            .where(
                or_(ThreadEvent.thread_id == thread_id, ThreadEvent.other_thread_id == thread_id)
            )
            .order_by(ThreadEvent.at, ThreadEvent.id)
        ).all()
        return [
            {
                "at": e.at.isoformat(),
                "by": e.actor,
                "action": e.action,
                "from_thread": e.other_thread_id,
                "to_thread": e.thread_id,
                "posts": e.posts,
                "what": e.detail,
            }
            for e in events
        ]


def _post(conn: Connection, post_id: int) -> Any:
    row = conn.execute(
        select(Post.list_id, Post.thread_id, Post.subject, Post.received_at).where(
            Post.id == post_id
        )
    ).first()
    if row is None:
        raise SurgeryError(f"no such post: {post_id}")
    return row


def _thread(conn: Connection, thread_id: int) -> Any:
    row = conn.execute(select(Thread.list_id, Thread.subject).where(Thread.id == thread_id)).first()
    if row is None:
        raise SurgeryError(f"no such thread: {thread_id}")
    return row


def _record(
    conn: Connection,
    list_id: int,
    thread_id: int,
    other: int,
    action: str,
    posts: int,
    detail: str,
    actor: str,
    now: datetime,
) -> None:
    conn.execute(
        ThreadEvent.__table__.insert().values(
            list_id=list_id,
            thread_id=thread_id,
            other_thread_id=other,
            action=action,
            posts=posts,
            detail=detail,
            actor=actor,
            at=now,
        )
    )
