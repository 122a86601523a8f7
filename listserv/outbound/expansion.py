"""Expansion: pending fan-out jobs become deliveries, one per member who gets the post by
mail, in job order, resuming from each job's committed cursor (unique(post, member) makes
a repeated batch harmless)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session

from listserv.core.addresses import identity
from listserv.store.database import insert_ignore
from listserv.store.models import (
    Delivery,
    DeliveryStatus,
    FanoutJob,
    Member,
    Post,
    ThreadWish,
    not_paused,
)

# Deliveries one expansion creates at most.
EXPAND_BATCH = 1000
# Jobs looked at per expansion: the copies of up to this many small posts in one round.
EXPAND_JOBS = 100

# The expansion's statements, built once: building the recipients query for each job cost
# more than running it (0.85 ms a job, two thirds of it in SQLAlchemy's expression code).
_PENDING_JOBS = (
    select(FanoutJob.id, FanoutJob.post_id, FanoutJob.cursor)
    .where(FanoutJob.done.is_(False))
    .order_by(FanoutJob.id)
    .limit(EXPAND_JOBS)
    # Not SKIP LOCKED: a second dispatcher that skipped the jobs another is expanding would
    # queue later posts' copies ahead of theirs, and members would read them out of order.
    # It waits instead; an expansion is one short transaction.
    .with_for_update()
)
_JOB_POSTS = (select(Post.id, Post.list_id, Post.thread_id, Post.author_address)
              .where(Post.id.in_(bindparam("ids", expanding=True))))
_JOB_PROGRESS = (update(FanoutJob.__table__)
                 .where(FanoutJob.__table__.c.id == bindparam("job"))
                 .values(cursor=bindparam("cursor_now"), done=bindparam("done_now")))
_WISH = exists().where(ThreadWish.member_id == Member.id,
                       ThreadWish.thread_id == bindparam("thread_id"))
# The next members after a job's cursor who get its post by mail.
_RECIPIENTS = (
    select(Member.id, Member.address, Member.receive_own_posts)
    .where(Member.list_id == bindparam("list_id"),
           # each post but a muted thread's; a followed thread's for the others
           or_(and_(Member.mode == "each", ~_WISH.where(ThreadWish.wish == "mute")),
               and_(Member.mode != "each", _WISH.where(ThreadWish.wish == "follow"))),
           Member.disabled_at.is_(None), not_paused(bindparam("now")),
           Member.id > bindparam("cursor"))
    .order_by(Member.id)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True)
class Expanded:
    pending: bool  # whether any job was pending
    rows: int  # deliveries inserted
    unfinished: bool  # the last job expanded still has members (a big fan-out)


def expand(session: Session, now: datetime) -> Expanded:
    """Expand the oldest pending jobs into at most EXPAND_BATCH deliveries, in job order,
    so that each recipient's copies are queued (and claimed) in post order: under load a
    round then carries the copies of many small posts, not of one."""
    conn = session.connection()
    jobs = conn.execute(_PENDING_JOBS).all()
    if not jobs:
        return Expanded(False, 0, False)
    posts = {row.id: row for row in conn.execute(_JOB_POSTS, {"ids": [j.post_id for j in jobs]})}
    rows: list[dict[str, object]] = []
    progress: list[dict[str, object]] = []
    budget = EXPAND_BATCH
    unfinished = False
    for job in jobs:
        if budget == 0:
            break
        post = posts[job.post_id]
        members = conn.execute(_RECIPIENTS, {
            "list_id": post.list_id, "thread_id": post.thread_id, "cursor": job.cursor,
            "now": now, "limit": budget}).all()
        author = identity(post.author_address)
        rows += [
            {"post_id": post.id, "member_id": mid, "recipient": address,
             "status": DeliveryStatus.QUEUED, "attempts": 0, "next_attempt_at": now,
             "created_at": now}
            for mid, address, own in members
            if own or identity(address) != author
        ]
        done = len(members) < budget
        progress.append({"job": job.id, "done_now": done,
                         "cursor_now": members[-1][0] if members else job.cursor})
        budget -= len(members)
        if not done:  # a big fan-out: the rest of it in the next rounds
            unfinished = True
            break
    conn.execute(_JOB_PROGRESS, progress)
    insert_ignore(session, Delivery, rows)
    return Expanded(True, len(rows), unfinished)
