"""The tables. State lives in rows so that every stage can be killed and resumed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from listserv.core import addresses

MODES = ("each", "digest", "nomail")


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
ARCHIVES = ("members", "public", "none")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored; pass aware UTC datetimes")
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    subject_prefix: Mapped[str] = mapped_column(String(100), default="")
    from_rewrite: Mapped[str] = mapped_column(String(10), default="always")
    digest_hour: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Hours a temporarily failing delivery is retried; NULL: [delivery] max_age_hours.
    max_retry_hours: Mapped[float | None] = mapped_column(Float)
    # Who may read the archive on the web: members (signed in), public, or none.
    archive: Mapped[str] = mapped_column(String(10), default="members",
                                         server_default="members")
    # Protecting the community: a new member's first N posts wait for a moderator (0: off);
    # posts per member and per list in the last 24 hours beyond which they are held (NULL:
    # no limit); the emergency brake, holding every post; sending paused for this list.
    probation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_posts_per_day: Mapped[int | None] = mapped_column(Integer)
    max_list_posts_per_day: Mapped[int | None] = mapped_column(Integer)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sending_paused: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default=false())

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def list_id(self) -> str:
        return addresses.list_id(self.address)


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("list_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    mode: Mapped[str] = mapped_column(String(10), default="each")
    receive_own_posts: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Bounce score as Mailman keeps it; at the threshold delivery stops (disabled_at set).
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0)
    last_bounce_on: Mapped[date | None] = mapped_column(Date)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Probation ended early by a moderator (`held approve --trust`).
    trusted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A pause the member asked for ("pause 2 weeks"): no mail until then, and a reminder
    # that day (the scheduler clears it when it sends the reminder).
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The member's own digest time: the list's digest reaches them at this hour in this
    # zone (None: when the list's run opens; no zone: the list's).
    digest_hour: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))


def not_paused(now: datetime) -> ColumnElement[bool]:
    """Members who are not in a pause at `now` (deliveries and digests skip the others)."""
    return or_(Member.paused_until.is_(None), Member.paused_until <= now)


class ThreadWish(Base):
    """A member's wish for one thread: `mute` (none of its posts, nor in the digest) or
    `follow` (its posts one by one, for a member reading a digest or no mail)."""

    __tablename__ = "thread_wishes"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"),
                                           primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"),
                                           primary_key=True)
    wish: Mapped[str] = mapped_column(String(10))  # mute | follow
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# One membership per mailbox however its address is spelled (addresses.identity): without
# it `A@Example.com` and `a@example.com` were two members and one mailbox got each post twice.
Index("uq_members_list_identity", Member.list_id, func.lower(Member.address), unique=True)


class Thread(Base):
    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_list_activity", "list_id", "last_activity"),
        Index("ix_threads_list_subject", "list_id", "subject_key", "last_activity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(998))
    subject_key: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_activity: Mapped[datetime] = mapped_column(UTCDateTime)
    post_count: Mapped[int] = mapped_column(Integer, default=0)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("list_id", "message_id"),
        Index("ix_posts_thread", "thread_id", "id"),
        Index("ix_posts_list_received", "list_id", "received_at"),
        # Probation and per-member daily limits count an author's posts.
        Index("ix_posts_list_author", "list_id", "author_address", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    message_id: Mapped[str] = mapped_column(String(998))
    author_address: Mapped[str] = mapped_column(String(320))
    author_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(998))
    date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    body: Mapped[str] = mapped_column(Text)
    # The author's own words: body with quoted text and signature trimmed (for digests).
    new_text: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # Stored by `listserv archive import`: part of the archive, never in a digest.
    imported: Mapped[bool] = mapped_column(Boolean, default=False)


class Held(Base):
    """A message waiting for a moderator; it becomes a Post only when approved."""

    __tablename__ = "held"
    __table_args__ = (UniqueConstraint("list_id", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(998))
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


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


# A delivery sends exactly one message: a post, a notice or a digest.
ONE_SOURCE = ("CASE WHEN post_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN notice_id IS NULL THEN 0 ELSE 1 END"
              " + CASE WHEN digest_id IS NULL THEN 0 ELSE 1 END = 1")


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
        CheckConstraint(ONE_SOURCE, name="ck_deliveries_one_source"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # Keeps each recipient's mail in order: nothing overtakes an earlier unsent delivery.
        Index("ix_deliveries_recipient", "recipient", "status", "id"),
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


# -- membership and moderation ---------------------------------------------------------------
POLICIES = ("open", "members", "moderated", "announce")
ROLES = ("owner", "moderator", "poster", "moderated")


class Setting(Base):
    """Installation-wide values kept with the data, such as the token secret."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ListPolicy(Base):
    """Who may post to a list; a list without a row follows the default, `members`."""

    __tablename__ = "list_policies"

    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"),
                                         primary_key=True)
    policy: Mapped[str] = mapped_column(String(16), default="members")


class ListRole(Base):
    """An address's role on a list: owner, moderator, approved poster (announce lists) or a
    member whose posts are held (moderated); an address may hold several."""

    __tablename__ = "list_roles"
    __table_args__ = (UniqueConstraint("list_id", "address", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))


class Pending(Base):
    """A join, leave or change of delivery mode waiting for its confirmation token to come
    back from the mailbox."""

    __tablename__ = "pending"
    # Ids never come back after a delete, so a token can only ever name one request.
    __table_args__: ClassVar[dict[str, Any]] = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    # join | leave | a Member.mode | mute | follow (thread_id) | pause (until)
    action: Mapped[str] = mapped_column(String(10))
    thread_id: Mapped[int | None] = mapped_column(Integer)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hour: Mapped[int | None] = mapped_column(Integer)  # digest at this hour
    address: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsedToken(Base):
    """Single-use tokens that were used; a second use is refused."""

    __tablename__ = "used_tokens"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime)


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


class MemberEvent(Base):
    """A membership ended by the member (by mail or one click), the admin, or the member's
    mail provider (a complaint): kept after the member row is gone, for the owners' report
    and so a repeated one-click POST stays a success. A spam complaint that proved no
    member's copy is kept too (member 0, no address), so the owners see it counted."""

    __tablename__ = "member_events"
    __table_args__ = (Index("ix_member_events_list_at", "list_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(320))
    # unsubscribe (one click, leave address, confirmed leave, CLI) | complaint (ARF report
    # from the member's provider) | complaint-none (an ARF report tied to no copy we sent;
    # nobody removed) | cmd-<command> (a message to the list taken as that command in
    # plain words, e.g. cmd-unsubscribe, cmd-digest-on; member 0)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


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


# -- the web archive -------------------------------------------------------------------------
class SignInRequest(Base):
    """One sign-in link asked for on the web, by a member or not: the single-use token names
    this row, and the rows of the last hour are the rate limit per address and per client."""

    __tablename__ = "web_signin_requests"
    __table_args__ = (Index("ix_web_signin_address_at", "address", "at"),
                      Index("ix_web_signin_client_at", "client", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A reader signed in on the web; the cookie names the row and is signed with the token
    secret, and signing out deletes the row, so a copied cookie stops working too."""

    __tablename__ = "web_sessions"
    __table_args__: ClassVar[dict[str, Any]] = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ThreadEvent(Base):
    """One act of thread surgery by an admin (move, merge, split): kept after the threads
    it names are gone, so `listserv thread history` tells who did what, and when."""

    __tablename__ = "thread_events"
    __table_args__ = (Index("ix_thread_events_thread", "thread_id"),
                      Index("ix_thread_events_other", "other_thread_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    # The thread that received posts, and the one they came from.
    thread_id: Mapped[int] = mapped_column(Integer)
    other_thread_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(10))  # move | merge | split
    posts: Mapped[int] = mapped_column(Integer)  # how many posts changed thread
    detail: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


# The row of each kind of source; its list_id is the list whose settings apply.
SOURCE_MODELS: dict[SourceKind, type[Post] | type[Notice] | type[DigestRun]] = {
    SourceKind.POST: Post, SourceKind.NOTICE: Notice, SourceKind.DIGEST: DigestRun,
}
