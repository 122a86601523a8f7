"""What was written: threads, posts, held messages, and thread surgery's history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from listserv.store.models.base import Base, UTCDateTime


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
    # A server default, as its migration has: bulk loads in SQL need not name it.
    imported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())



class Held(Base):
    """A message waiting for a moderator; it becomes a Post only when approved."""

    __tablename__ = "held"
    __table_args__ = (UniqueConstraint("list_id", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(998))
    sender: Mapped[str] = mapped_column(String(320))  # From: what the moderator reads
    # MAIL FROM as received ("" for the null sender): who hears what became of it.
    envelope_sender: Mapped[str] = mapped_column(String(320), default="", server_default="")
    subject: Mapped[str] = mapped_column(String(998))
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw: Mapped[bytes] = mapped_column(LargeBinary)  # exactly as received



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
