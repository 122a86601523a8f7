"""What an admin sees and does in the outbox and with bouncing members: queries only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from listserv.store.models import Delivery, MailingList, Member, Notice, Setting
from listserv.store.settings import PAUSED_KEY, sending_paused

UNSENT = ("queued", "deferred", "failed")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def pending(session: Session, statuses: Sequence[str] = UNSENT,
            limit: int = 1000) -> list[dict[str, Any]]:
    """Deliveries not yet sent, oldest first, with their next attempt and last error."""
    rows = session.execute(
        select(Delivery, Notice.kind)
        .outerjoin(Notice, Notice.id == Delivery.notice_id)
        .where(Delivery.status.in_(statuses))
        .order_by(Delivery.id)
        .limit(limit)
    ).all()
    return [
        {
            "id": d.id,
            "status": d.status,
            "recipient": d.recipient,
            "message": f"post {d.post_id}" if d.post_id is not None else f"{kind} notice",
            "attempts": d.attempts,
            "next_attempt": _iso(d.next_attempt_at) if d.status != "failed" else None,
            "last_error": d.last_error,
            "created_at": _iso(d.created_at),
        }
        for d, kind in rows
    ]


def retry(session: Session, ids: Sequence[int] | None, now: datetime) -> int:
    """Make deferred or failed deliveries (all, or those ids) due now; how many changed.

    A failed delivery starts a fresh retry period, or the next temporary error would fail
    it again at once. "Due" means due since its creation, so it is due at once whatever the
    dispatcher's clock says.
    """
    query = update(Delivery).where(
        or_(Delivery.status == "deferred", Delivery.status == "failed"),
    )
    if ids is not None:
        query = query.where(Delivery.id.in_(ids))
    failed = update(Delivery).where(Delivery.status == "failed")
    if ids is not None:
        failed = failed.where(Delivery.id.in_(ids))
    session.execute(failed.values(created_at=now))
    result = session.execute(
        query.values(status="deferred", next_attempt_at=Delivery.created_at, lease_until=None,
                     lease_owner=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def bouncing_members(session: Session, ml: MailingList) -> list[dict[str, Any]]:
    """Members with a bounce score or disabled delivery, highest score first."""
    found = session.scalars(
        select(Member)
        .where(Member.list_id == ml.id,
               or_(Member.bounce_score > 0, Member.disabled_at.is_not(None)))
        .order_by(Member.bounce_score.desc(), Member.address)
    )
    return [
        {
            "address": m.address,
            "score": m.bounce_score,
            "last_bounce": m.last_bounce_on.isoformat() if m.last_bounce_on else None,
            "delivery": "disabled" if m.disabled_at else "enabled",
            "disabled_at": _iso(m.disabled_at),
        }
        for m in found
    ]


def pause(session: Session, ml: MailingList | None, now: datetime) -> None:
    """Stop sending (posts, digests, notices) of one list, or of all; nothing is dropped:
    deliveries wait queued, and fan-outs and digests are still prepared."""
    if ml is not None:
        ml.sending_paused = True
    elif session.get(Setting, PAUSED_KEY) is None:
        session.add(Setting(key=PAUSED_KEY, value=now.isoformat()))


def resume(session: Session, ml: MailingList | None) -> None:
    """Send again what one list (or every list, and the whole outbox) holds."""
    if ml is not None:
        ml.sending_paused = False
        return
    setting = session.get(Setting, PAUSED_KEY)
    if setting is not None:
        session.delete(setting)
    session.execute(update(MailingList).values(sending_paused=False))


def paused_line(session: Session) -> str | None:
    """What `outbox` says first while sending is paused, or None."""
    everything, lists = sending_paused(session)
    if everything:
        return "SENDING PAUSED for every list (listserv outbox resume)"
    if lists:
        return f"SENDING PAUSED for {', '.join(lists)} (listserv outbox resume LIST)"
    return None
