"""The owners' report: per day, what a list received, sent, failed to send and lost."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.core import stats
from listserv.store.models import (
    Delivery,
    DeliveryFailure,
    MailingList,
    Member,
    MemberEvent,
    Notice,
    Post,
)

# The notice kind of the owners' daily report: not list traffic, so not counted in it
# (otherwise every report would make the next day worth reporting).
REPORT_KIND = "owner_report"


def record_failure(session: Session, delivery: Delivery, code: int, text: str, final: bool,
                   now: datetime) -> None:
    """Keep one failed attempt for the report, in the outbox's transaction."""
    list_id = None
    if delivery.post_id is not None:
        list_id = session.scalar(select(Post.list_id).where(Post.id == delivery.post_id))
    elif delivery.notice_id is not None:
        list_id = session.scalar(select(Notice.list_id).where(Notice.id == delivery.notice_id))
    session.add(DeliveryFailure(
        list_id=list_id, delivery_id=delivery.id, recipient=delivery.recipient,
        kind=stats.failure_kind(code, text, final), reply=f"{code} {text}"[:1000], at=now,
    ))


def _window(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """From the start of `first` to the end of `last`, local days."""
    return (datetime.combine(first, time(), zone),
            datetime.combine(last + timedelta(days=1), time(), zone))


def list_report(session: Session, ml: MailingList, first: date,
                last: date) -> list[dict[str, object]]:
    """Per-day counts for `ml` from `first` to `last`, days in the list's time zone."""
    return stats.per_day(_events(session, ml, first, last), first, last)


def _events(session: Session, ml: MailingList, first: date,
            last: date) -> list[tuple[date, str]]:
    """(local day, kind) of everything the report counts from `first` to `last`."""
    zone = ZoneInfo(ml.timezone)
    start, end = _window(first, last, zone)
    events: list[tuple[datetime, str]] = []
    events += [(at, "post") for at in session.scalars(
        select(Post.received_at).where(Post.list_id == ml.id, Post.received_at >= start,
                                       Post.received_at < end))]
    sent = select(Delivery.sent_at).where(
        Delivery.status == "sent", Delivery.sent_at >= start, Delivery.sent_at < end)
    events += [(at, "delivery") for at in session.scalars(
        sent.join(Post, Post.id == Delivery.post_id).where(Post.list_id == ml.id))]
    events += [(at, "delivery") for at in session.scalars(
        sent.join(Notice, Notice.id == Delivery.notice_id)
        .where(Notice.list_id == ml.id, Notice.kind != REPORT_KIND))]
    for model in (DeliveryFailure, MemberEvent):
        events += [(at, kind) for at, kind in session.execute(
            select(model.at, model.kind).where(
                model.list_id == ml.id, model.at >= start, model.at < end))]
    return [(at.astimezone(zone).date(), kind) for at, kind in events if at is not None]


def day_report(session: Session, ml: MailingList, day: date) -> stats.DayReport:
    """One local day's counts, as `listserv report` gives them, with the addresses the owners
    should know of: who complained (and was unsubscribed), whose delivery bounces ended,
    and who wrote a command to the list in plain words (not posted)."""
    counts = stats.tally(_events(session, ml, day, day), day, day)[day]
    start, end = _window(day, day, ZoneInfo(ml.timezone))
    complainers = session.scalars(
        select(MemberEvent.address)
        .where(MemberEvent.list_id == ml.id, MemberEvent.kind == "complaint",
               MemberEvent.at >= start, MemberEvent.at < end)
        .order_by(MemberEvent.at, MemberEvent.id))
    disabled = session.scalars(
        select(Member.address)
        .where(Member.list_id == ml.id, Member.disabled_at >= start, Member.disabled_at < end)
        .order_by(Member.disabled_at, Member.id))
    commands = session.execute(
        select(MemberEvent.address, MemberEvent.kind)
        .where(MemberEvent.list_id == ml.id, MemberEvent.kind.startswith("cmd-"),
               MemberEvent.at >= start, MemberEvent.at < end)
        .order_by(MemberEvent.at, MemberEvent.id))
    taken = tuple(f"{address}: {kind[4:].replace('-', ' ')}" for address, kind in commands)
    return stats.DayReport(day, counts, tuple(complainers), tuple(disabled), taken)
