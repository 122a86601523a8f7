"""What the archive's pages read from the store: lists, a page of threads, a thread."""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.policy import compat32

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from listserv.config import LimitsConfig
from listserv.core.addresses import role_address, tagged
from listserv.core.headers import decode_header_value
from listserv.core.mime import walk
from listserv.store.models import Held, ListRole, MailingList, Member, Post, Thread
from listserv.web import text

THREADS_PER_PAGE = 30


@dataclass(frozen=True)
class Reader:
    """Who asks: a signed-in address, or nobody (address None)."""

    address: str | None = None
    session_id: int | None = None


def may_read(session: Session, reader: Reader, ml: MailingList) -> bool:
    if ml.archive == "public":
        return True
    if ml.archive != "members" or reader.address is None:
        return False
    return bool(
        session.scalar(
            select(
                select(Member.id)
                .where(Member.list_id == ml.id, Member.address == reader.address)
                .exists()
                | select(ListRole.id)
                .where(
                    ListRole.list_id == ml.id,
                    ListRole.address == reader.address,
                    ListRole.role.in_(("owner", "moderator")),
                )
                .exists()
            )
        )
    )


def held_count(session: Session, reader: Reader, ml: MailingList) -> int | None:
    """Messages waiting for a moderator, for the list's owners and moderators; else None."""
    if reader.address is None or not session.scalar(
        select(
            select(ListRole.id)
            .where(
                ListRole.list_id == ml.id,
                ListRole.address == reader.address,
                ListRole.role.in_(("owner", "moderator")),
            )
            .exists()
        )
    ):
        return None
    return session.scalar(select(func.count()).select_from(Held).where(Held.list_id == ml.id)) or 0


@dataclass(frozen=True)
class ListCard:
    ml: MailingList
    members: int
    last_activity: datetime | None


def lists(session: Session, reader: Reader) -> list[ListCard]:
    """The lists this reader may read, with member counts and latest activity."""
    members = dict(
        session.execute(select(Member.list_id, func.count()).group_by(Member.list_id)).all()
    )
    latest = dict(
        session.execute(
            select(Thread.list_id, func.max(Thread.last_activity)).group_by(Thread.list_id)
        ).all()
    )
    return [
        ListCard(ml, members.get(ml.id, 0), latest.get(ml.id))
        for ml in session.scalars(select(MailingList).order_by(MailingList.title))
        if may_read(session, reader, ml)
    ]


@dataclass(frozen=True)
class ThreadRow:
    id: int
    subject: str
    starter: str
    members: int
    replies: int
    last_activity: datetime


def threads(session: Session, ml: MailingList, page: int) -> tuple[list[ThreadRow], bool]:
    """One page of a list's threads, most recently active first; and whether more follow."""
    found = session.execute(
        select(Thread.id, Thread.subject, Thread.post_count, Thread.last_activity)
        .where(Thread.list_id == ml.id)
        .order_by(Thread.last_activity.desc())
        .limit(THREADS_PER_PAGE + 1)
        .offset((page - 1) * THREADS_PER_PAGE)
    ).all()
    more = len(found) > THREADS_PER_PAGE
    found = found[:THREADS_PER_PAGE]
    ids = [row[0] for row in found]
    if not ids:
        return [], False
    authors = dict(
        session.execute(
            select(Post.thread_id, func.count(distinct(Post.author_address)))
            .where(Post.thread_id.in_(ids))
            .group_by(Post.thread_id)
        ).all()
    )
    first = select(func.min(Post.id)).where(Post.thread_id.in_(ids)).group_by(Post.thread_id)
    starters = {
        tid: text.author(name, address)
        for tid, name, address in session.execute(
            select(Post.thread_id, Post.author_name, Post.author_address).where(Post.id.in_(first))
        )
    }
    return [
        ThreadRow(tid, subject, starters.get(tid, ""), authors.get(tid, 0), max(count - 1, 0), last)
        for tid, subject, count, last in found
    ], more


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    size: int
    content_type: str


@dataclass(frozen=True)
class PostView:
    id: int
    author: str
    at: datetime
    body: text.Body
    attachments: list[Attachment]


_MULTIPART_RE = re.compile(rb"(?im)^content-type:[ \t]*multipart/")
HEAD_BYTES = 16384  # enough for the header block of nearly every message


def _header_block(raw: bytes) -> bytes | None:
    """The header block of a message's first bytes; None when it does not end in them."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return raw[: min(ends)] if ends else None


def may_have_attachments(head: bytes) -> bool:
    """Whether a message can hold attachments, from its first bytes: only multipart ones
    are read whole and parsed."""
    block = _header_block(head)
    return block is None or bool(_MULTIPART_RE.search(block))


def attachment_parts(raw: bytes) -> list[Message]:
    """A message's attachments, walked within the usual MIME limits."""
    if not may_have_attachments(raw[:HEAD_BYTES]):
        return []
    parts = walk(email.message_from_bytes(raw, policy=compat32), LimitsConfig())
    if not isinstance(parts, list):
        return []
    return [p for p in parts if not p.is_multipart() and _is_attachment(p)]


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("content-disposition", "")).split(";")[0].strip().lower()
    return disposition == "attachment" or (disposition != "inline" and bool(part.get_filename()))


def filename(part: Message, index: int) -> str:
    name = decode_header_value(part.get_filename() or "")
    name = name.replace("/", "_").replace("\\", "_").strip(". ")
    return name or f"attachment-{index}"


def attachments(raw: bytes) -> list[Attachment]:
    out = []
    for i, part in enumerate(attachment_parts(raw), 1):
        data = part.get_payload(decode=True)
        out.append(
            Attachment(
                i,
                filename(part, i),
                len(data) if isinstance(data, bytes) else 0,
                part.get_content_type(),
            )
        )
    return out


def own_addresses(ml: MailingList) -> frozenset[str]:
    """The list's addresses, which pages may show."""
    return frozenset(
        {ml.address, *(role_address(ml.address, r) for r in ("request", "owner", "join", "leave"))}
    )


def thread_posts(session: Session, ml: MailingList, thread: Thread) -> tuple[list[PostView], int]:
    """A thread's posts in order and its number of distinct authors. A post's raw message is
    read whole only when its header says it is multipart."""
    allowed = own_addresses(ml)
    posts = []
    authors = set()
    rows = session.execute(
        select(
            Post.id,
            Post.author_name,
            Post.author_address,
            Post.received_at,
            Post.body,
            Post.new_text,
            func.substr(Post.raw, 1, HEAD_BYTES),
        )
        .where(Post.thread_id == thread.id)
        .order_by(Post.id)
    )
    for pid, name, address, received, body, new_text, head in rows:
        authors.add(address)
        files = (
            attachments(session.scalar(select(Post.raw).where(Post.id == pid)) or b"")
            if may_have_attachments(bytes(head or b""))
            else []
        )
        posts.append(
            PostView(
                pid, text.author(name, address), received, text.body(body, new_text, allowed), files
            )
        )
    return posts, len(authors)


def reply_address(ml: MailingList, thread_id: int) -> str:
    """Where a reply lands in this thread (as in every copy's Reply-To)."""
    return tagged(ml.address, f"t{thread_id}")
