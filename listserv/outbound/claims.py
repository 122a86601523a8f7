"""Which deliveries may go now, in each recipient's order: a recipient's oldest unsent
delivery, and behind it that recipient's next post copies, so that a later post never
overtakes an earlier one being retried and each thread arrives in order."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from listserv.store.models import (
    Delivery,
    DeliveryStatus,
    DigestRun,
    MailingList,
    Notice,
    Post,
)

UNSENT = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)


def due_deliveries(session: Session, limit: int, now: datetime, paused: list[str]) -> list[int]:
    """Up to `limit` deliveries to lease now, none of the `paused` lists', locked in
    `session`'s transaction.

    Only a recipient's oldest unsent delivery is a head (a digest waiting for its reader's
    own hour holds nothing back); behind each head the recipient's next post copies follow
    (`followers`), and the round sends them in order, each after the one before it was
    accepted.
    """
    earlier = aliased(Delivery)
    heads = session.execute(
        select(Delivery.id, Delivery.recipient)
        .where(
            *_not_of_lists(paused),
            Delivery.status.in_(UNSENT),
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
            ~exists().where(
                earlier.recipient == Delivery.recipient,
                earlier.status.in_(UNSENT),
                earlier.id < Delivery.id,
                # a digest waiting for its reader's hour holds nothing back
                ~and_(earlier.digest_id.is_not(None), earlier.next_attempt_at > now),
            ),
        )
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    ids = [head.id for head in heads]
    if heads and not paused:
        ids += followers(session, {r: i for i, r in heads}, limit - len(ids), now)
    return ids


def _not_of_lists(addresses: list[str]) -> list[ColumnElement[bool]]:
    """Deliveries that are not of these lists (posts, notices and digests alike)."""
    if not addresses:
        return []
    of = select(MailingList.id).where(MailingList.address.in_(addresses))
    return [
        ~exists().where(Post.id == Delivery.post_id, Post.list_id.in_(of)),
        ~exists().where(Notice.id == Delivery.notice_id, Notice.list_id.in_(of)),
        ~exists().where(DigestRun.id == Delivery.digest_id, DigestRun.list_id.in_(of)),
    ]


def followers(session: Session, heads: dict[str, int], room: int, now: datetime) -> list[int]:
    """Up to `room` post copies that follow the claimed `heads` (recipient -> delivery
    id) in their recipients' queues, each recipient's in order and without a gap: a
    recipient's chain stops at the first delivery that may not go now (leased, not
    due, not a post copy), as the rule "oldest unsent first" would hold it.

    A small list under load queues several posts for each member; with only heads, a
    round carried one copy per member, one post per round (bench/end_to_end.py: 34
    posts/s end to end to a list of 10).
    """
    if room <= 0:
        return []
    rows = session.execute(
        select(Delivery.id, Delivery.recipient, Delivery.post_id, Delivery.digest_id,
               Delivery.next_attempt_at, Delivery.lease_until)
        .where(Delivery.recipient.in_(list(heads)),
               Delivery.status.in_(UNSENT),
               Delivery.id > min(heads.values()))
        .order_by(Delivery.id)
        .limit(2 * room + len(heads))
        # not SKIP LOCKED: skipping a locked copy would let a later one overtake it
        .with_for_update()
    ).all()
    stopped: set[str] = set()
    found: list[int] = []
    for ident, recipient, post_id, digest_id, due, lease in rows:
        if recipient in stopped or ident <= heads[recipient]:
            continue
        if digest_id is not None and due > now:
            continue  # a digest waiting for its reader's hour holds nothing back
        if post_id is None or due > now or (lease is not None and lease >= now):
            stopped.add(recipient)
            continue
        found.append(ident)
        if len(found) == room:
            break
    return found
