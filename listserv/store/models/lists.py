"""Lists and the people on them: members, their wishes and pauses, roles, policies,
pending confirmations, used tokens, membership events, installation settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    or_,
)
from sqlalchemy.orm import Mapped, mapped_column

from listserv.core import addresses
from listserv.store.models.base import Base, UTCDateTime

MODES = ("each", "digest", "nomail")
ARCHIVES = ("members", "public", "none")


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
