"""One-click unsubscribe: the member's personal token in a URL, and what it does.

The token is the membership issue's `u` token (kind, member id, HMAC bound to the list and
the address: `core.unsubscribe`), so one secret serves the `-leave+TOKEN` address and the
one-click URL alike.
Removing a member also records a MemberEvent: the owners' report counts it, and a repeated
POST of the same link (mail providers retry) finds it and answers success again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from listserv.core import tokens
from listserv.core.unsubscribe import binding
from listserv.store.models import Delivery, MailingList, Member, MemberEvent


class Result(Enum):
    UNSUBSCRIBED = "unsubscribed"
    ALREADY = "already"
    REFUSED = "refused"


@dataclass(frozen=True)
class Target:
    """What a valid token names; `member` is None once the membership has ended."""

    list_address: str
    list_title: str
    address: str
    member: Member | None


def resolve(session: Session, token: str, now: datetime, secret: bytes) -> Target | None:
    """The membership a token was issued for, or None for anything forged, altered or
    foreign; callers answer None with a page that says nothing more."""
    peeked = tokens.peek(token)
    if peeked is None or peeked.kind != "u":
        return None
    member = session.get(Member, peeked.ident)
    candidates: list[tuple[int, str, Member | None]] = []
    if member is not None:
        candidates.append((member.list_id, member.address, member))
    ended = session.execute(
        select(MemberEvent.list_id, MemberEvent.address)
        .where(MemberEvent.member_id == peeked.ident)
        .order_by(MemberEvent.id.desc())
    ).all()
    candidates += [(list_id, address, None) for list_id, address in ended]
    for list_id, address, row in candidates:
        ml = session.get(MailingList, list_id)
        if ml is None:
            continue
        try:
            tokens.verify(secret, token, binding(ml.address, address), now)
        except tokens.TokenError:
            continue
        return Target(ml.address, ml.title, address, row)
    return None


def remove(session: Session, member: Member, kind: str, now: datetime) -> None:
    """End a membership and record why, in the caller's transaction.

    Posts still waiting for this member (a deferred retry can wait days) are dropped too:
    mail arriving after "unsubscribe" is what gets a list reported as spam. Deliveries a
    worker holds right now are left to finish."""
    session.add(MemberEvent(list_id=member.list_id, member_id=member.id,
                            address=member.address, kind=kind, at=now))
    session.execute(delete(Delivery).where(
        Delivery.member_id == member.id, Delivery.post_id.is_not(None),
        Delivery.status.in_(("queued", "deferred")),
        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now)))
    session.execute(delete(Member).where(Member.id == member.id))


def one_click(session: Session, token: str, now: datetime,
              secret: bytes) -> tuple[Result, Target | None]:
    """Unsubscribe at once; a second use of the same valid token is still a success."""
    target = resolve(session, token, now, secret)
    if target is None:
        return Result.REFUSED, None
    if target.member is None:
        return Result.ALREADY, target
    remove(session, target.member, "unsubscribe", now)
    return Result.UNSUBSCRIBED, target
