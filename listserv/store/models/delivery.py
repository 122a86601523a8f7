"""What goes out and what comes back: fan-out jobs, notices, digest runs, owners'
reports, one row per delivery, bounces and failed attempts."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from listserv.store.models.base import Base, UTCDateTime


class FanoutJob(Base):
    """One row per post, written with it: the 250 never waits for the list's size.

    The dispatcher expands it into deliveries in batches; `cursor` is the last member id
    expanded, committed with each batch, so a killed expansion resumes where it stopped.
    """

    __tablename__ = "fanout_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), unique=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)



class Notice(Base):
    """A message we compose once for one person (confirmation, welcome, notice), kept whole
    until sent, so it survives restarts like any post."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(320))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)



class DeliveryStatus(StrEnum):
    """queued -> sent | deferred -> ... -> sent | failed"""

    QUEUED = "queued"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"


class SourceKind(StrEnum):
    """What a delivery sends: the row its one source column names (ck_deliveries_one_source)."""

    POST = "post"
    NOTICE = "notice"
    DIGEST = "digest"


# Exactly one message a delivery sends: a post, a notice or a digest run.
ONE_SOURCE = ("(CASE WHEN post_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN notice_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN digest_id IS NULL THEN 0 ELSE 1 END) = 1")


class Delivery(Base):
    """One message to one recipient; sent only after the relay answered 250 for it.

    The message is a post (composed per list at send time), a notice (stored whole) or a
    digest (shared body stored on its run, footer per recipient); exactly one of post_id,
    notice_id and digest_id is set.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("post_id", "member_id"),
        UniqueConstraint("digest_id", "member_id", name="uq_deliveries_digest_member"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # Keeps each recipient's mail in order: nothing overtakes an earlier unsent delivery.
        Index("ix_deliveries_recipient", "recipient", "status", "id"),
        CheckConstraint(ONE_SOURCE, name="ck_deliveries_one_source"),
        CheckConstraint(f"status IN ({', '.join(repr(str(s)) for s in DeliveryStatus)})",
                        name="ck_deliveries_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    notice_id: Mapped[int | None] = mapped_column(
        ForeignKey("notices.id", ondelete="CASCADE"), index=True
    )
    digest_id: Mapped[int | None] = mapped_column(
        ForeignKey("digest_runs.id", ondelete="CASCADE", name="fk_deliveries_digest_id"),
        index=True
    )
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    recipient: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(10), default=DeliveryStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)



class Bounce(Base):
    """One bounce we learned of: from the relay's 5xx, a VERP address, or a parsed DSN."""

    __tablename__ = "bounces"
    __table_args__ = (Index("ix_bounces_member", "member_id", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    address: Mapped[str] = mapped_column(String(320))
    permanent: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str | None] = mapped_column(String(16))
    # relay (5xx while sending), verp (mail to LIST-bounces+member), dsn (parsed report)
    source: Mapped[str] = mapped_column(String(10))
    # Whether it counted toward the score (not for policy rejections or disabled members).
    counted: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)



class DeliveryFailure(Base):
    """One failed attempt to hand a message to the relay: a deferral, or the final bounce."""

    __tablename__ = "delivery_failures"
    __table_args__ = (Index("ix_delivery_failures_list_at", "list_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"))
    recipient: Mapped[str] = mapped_column(String(320))
    # deferral | hard | soft | policy (stats.failure_kind)
    kind: Mapped[str] = mapped_column(String(10))
    reply: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)



class DigestRun(Base):
    """One digest of one list for one period, with its body rendered once for all readers.

    unique(list_id, period, serial) is what makes a digest go out exactly once: every
    scheduler (in any process) inserts serial 0, and only one insert can win. A forced
    resend (`listserv digest send --force`) takes the next serial.
    """

    __tablename__ = "digest_runs"
    __table_args__ = (UniqueConstraint("list_id", "period", "serial"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    # The local date of the morning it is sent, ISO format: "2026-11-27".
    period: Mapped[str] = mapped_column(String(10))
    serial: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    posts: Mapped[int] = mapped_column(Integer, default=0)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    subject: Mapped[str] = mapped_column(String(998), default="")
    # Quoted-printable bodies shared by every recipient; the footer goes between head and tail.
    text_head: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    text_tail: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    html_head: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    html_tail: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)



class OwnerReport(Base):
    """The owners' daily report of one list for one local day.

    unique(list_id, day) makes it go out once: every scheduler inserts the row in the
    transaction that queues the emails, and only one insert can win. A quiet day gets its
    row too, with no emails (owners 0), so it is not looked at again.
    """

    __tablename__ = "owner_reports"
    __table_args__ = (UniqueConstraint("list_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    # How many owners it was queued for.
    owners: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
