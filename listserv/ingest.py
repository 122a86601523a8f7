"""Apply the decision for an incoming message in ONE write transaction.

This is the durability point: the post, its thread and its single fan-out job are committed
together, and only then does the receiver answer 250. Messages arriving together share
that transaction (group commit), each in its own savepoint.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from . import policy, replytext, robots, threads
from .addresses import Route
from .config import LimitsConfig
from .db import Database, get_list, is_disk_full
from .message import Malformed, Parsed, parse
from .models import FanoutJob, Held, ListPolicy, ListRole, MailingList, Member, Post, Thread
from .replies import Outcome, combine

log = logging.getLogger("listserv.ingest")

_THREAD_TAG_RE = re.compile(r"^t(\d{1,18})$")

# Called in the storing transaction when a message is held: (session, list, held row,
# parsed message, envelope sender, now); moderation.on_held notifies poster and moderators.
OnHeld = Callable[[Session, MailingList, Held, Parsed, str, datetime], None]


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    detail: str
    post_ids: tuple[int, ...] = ()


def ensure_message_id(raw: bytes, parsed: Parsed, domain: str) -> tuple[bytes, Parsed]:
    """Give a message without Message-ID one of ours, in the stored bytes as in the record."""
    if parsed.message_id:
        return raw, parsed
    mid = f"{uuid.uuid4().hex}@{domain}"
    raw = f"Message-ID: <{mid}>\r\n".encode() + raw
    headers = (("Message-ID", f"<{mid}>"), *parsed.headers)
    return raw, Parsed(**{**parsed.__dict__, "message_id": mid, "headers": headers})


def tagged_thread(session: Session, ml: MailingList, detail: str | None) -> int | None:
    """The thread named by a reply tag, if it is well formed and belongs to this list."""
    match = _THREAD_TAG_RE.match(detail or "")
    if not match:
        return None
    return session.scalar(
        select(Thread.id).where(Thread.id == int(match[1]), Thread.list_id == ml.id)
    )


def _facts(session: Session, ml: MailingList, parsed: Parsed, sender: str) -> policy.Facts:
    author = parsed.author_address or ""
    is_member = session.scalar(
        select(Member.id).where(Member.list_id == ml.id, Member.address == author)
    )
    stored = session.scalar(
        select(Post.id).where(Post.list_id == ml.id, Post.message_id == parsed.message_id)
    ) or session.scalar(
        select(Held.id).where(Held.list_id == ml.id, Held.message_id == parsed.message_id)
    )
    headers: dict[str, list[str]] = {}
    for name, value in parsed.headers:
        headers.setdefault(name, []).append(value)
    robot = robots.robot_reason(
        headers, envelope_sender=sender, our_list_ids=[ml.list_id], our_loop_value=ml.address
    )
    roles = set(session.scalars(
        select(ListRole.role).where(ListRole.list_id == ml.id, ListRole.address == author)
    ))
    return policy.Facts(
        list_address=ml.address,
        author_is_member=is_member is not None,
        already_stored=stored is not None,
        robot=robot,
        posting_policy=session.scalar(
            select(ListPolicy.policy).where(ListPolicy.list_id == ml.id)) or "members",
        author_is_moderated="moderated" in roles,
        author_may_announce=bool(roles & {"owner", "poster"}),
    )


def _store_post(
    session: Session, ml: MailingList, parsed: Parsed, raw: bytes, route: Route, now: datetime
) -> Post:
    candidates = parsed.parent_candidates
    known: dict[str, tuple[int, int]] = {}
    if candidates:
        rows = session.execute(
            select(Post.message_id, Post.id, Post.thread_id).where(
                Post.list_id == ml.id, Post.message_id.in_(candidates)
            )
        )
        known = {mid: (pid, tid) for mid, pid, tid in rows}
    key = threads.subject_key(parsed.subject, ml.subject_prefix)
    match = session.execute(
        select(Thread.id, Thread.last_activity)
        .where(Thread.list_id == ml.id, Thread.subject_key == key)
        .order_by(Thread.last_activity.desc())
        .limit(1)
    ).first()
    choice = threads.choose(
        candidates,
        known,
        parsed.subject,
        ml.subject_prefix,
        (match[0], match[1]) if match else None,
        now,
        tagged_thread(session, ml, route.detail),
    )
    if choice.thread_id is None:
        _, clean = threads.split_markers(parsed.subject, ml.subject_prefix)
        thread = Thread(
            list_id=ml.id,
            subject=clean or "(no subject)",
            subject_key=key,
            started_at=now,
            last_activity=now,
            post_count=0,
        )
        session.add(thread)
        session.flush()
    else:
        thread = session.get_one(Thread, choice.thread_id)
    thread.last_activity = now
    thread.post_count += 1
    post = Post(
        list_id=ml.id,
        thread_id=thread.id,
        parent_id=choice.parent_post_id,
        message_id=parsed.message_id,
        author_address=parsed.author_address,
        author_name=parsed.author_name,
        subject=parsed.subject,
        date=parsed.date,
        received_at=now,
        body=parsed.text,
        new_text=replytext.new_text(parsed.text),
        raw=raw,
    )
    session.add(post)
    session.flush()
    session.add(FanoutJob(post_id=post.id, created_at=now))
    return post


def _apply(
    session: Session, routes: Sequence[Route], raw: bytes, parsed: Parsed, sender: str,
    now: datetime, on_held: OnHeld | None = None,
) -> Result:
    outcomes: list[Outcome] = []
    details: list[str] = []
    post_ids: list[int] = []
    for route in routes:
        ml = get_list(session, route.list_address or "")
        if ml is None:  # deleted between RCPT and DATA
            outcomes.append(Outcome.TEMPORARY_FAILURE)
            continue
        list_raw, list_parsed = ensure_message_id(raw, parsed, ml.domain)
        decision = policy.decide(list_parsed, _facts(session, ml, list_parsed, sender))
        outcomes.append(decision.outcome)
        details.append(f"{ml.address}: {decision.reason}")
        if decision.outcome is Outcome.ACCEPTED:
            post_ids.append(_store_post(session, ml, list_parsed, list_raw, route, now).id)
        elif decision.outcome is Outcome.HELD:
            held = Held(
                list_id=ml.id,
                message_id=list_parsed.message_id,
                sender=list_parsed.author_address,
                subject=list_parsed.subject,
                reason=decision.reason,
                received_at=now,
                # The envelope sender is kept as RFC 5321 records it, for later notices.
                raw=f"Return-Path: <{_clean(sender)}>\r\n".encode() + list_raw,
            )
            session.add(held)
            if on_held is not None:
                session.flush()
                on_held(session, ml, held, list_parsed, sender, now)
    return Result(combine(outcomes), "; ".join(details), tuple(post_ids))


def _clean(address: str) -> str:
    return address.replace("\r", "").replace("\n", "").replace(">", "")


@dataclass
class _Item:
    """One message waiting for a group commit, and what became of it."""

    routes: Sequence[Route]
    raw: bytes
    parsed: Parsed
    sender: str
    now: datetime
    on_held: OnHeld | None
    result: Result | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommitter:
    """Writes the messages that arrive together in ONE transaction, so they share one fsync.

    Leader and followers, without a thread of its own: a caller that finds no write in
    progress takes every waiting message and commits them; the others wait and are answered
    when the transaction holding theirs has committed (or failed). Each message is applied
    in its own SAVEPOINT, so a message that fails rolls back alone; a failed commit fails
    every message of the group, and nothing of it is stored.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._busy = False

    def run(self, item: _Item) -> Result:
        with self._cond:
            self._pending.append(item)
            while self._busy and not item.done:
                self._cond.wait()
            if not item.done:
                self._busy = True
                batch, self._pending = self._pending, []
        if not item.done:
            try:
                _commit(self.db, batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result


def _commit(db: Database, batch: list[_Item]) -> None:
    """Apply each message in its savepoint, then commit once; mark every item done."""
    try:
        with db.session() as session:
            for item in batch:
                for _attempt in range(2):
                    try:
                        with session.begin_nested():
                            item.result = _apply(session, item.routes, item.raw, item.parsed,
                                                 item.sender, item.now, item.on_held)
                        item.error = None
                        break
                    except IntegrityError as exc:
                        # A copy of the same Message-ID committed meanwhile by another
                        # process: applied again, the message is seen as a duplicate.
                        item.error = exc
                    except SQLAlchemyError:
                        raise  # the database, not this message: the group fails
                    except Exception as exc:  # a bug met by this message alone: the others go on
                        item.error = exc
                        break
    except Exception as exc:
        # SQLite may have rolled back the whole transaction (a full disk) before the
        # savepoint was: report the cause, not the failed ROLLBACK TO.
        cause: BaseException | None = exc
        while cause is not None and not is_disk_full(cause):
            cause = cause.__context__
        if len(batch) > 1:
            log.error("group commit of %d messages failed: %s", len(batch), exc)
        for item in batch:
            item.result, item.error = None, cause or exc
    finally:
        for item in batch:
            item.done = True


def receive(
    db: Database,
    routes: Sequence[Route],
    raw: bytes,
    sender: str,
    limits: LimitsConfig,
    now: datetime,
    on_held: OnHeld | None = None,
    committer: GroupCommitter | None = None,
) -> Result:
    """Parse, decide and store one message for its list recipients, all or nothing.

    Returns only after the transaction holding the message committed; with a committer,
    that transaction may also hold messages of other sessions. Database errors propagate:
    the caller answers 451 and nothing was stored. A concurrent copy of the same Message-ID
    (a client retrying on another connection) shows up as a unique-constraint conflict; the
    message is then applied once more and seen as a duplicate.
    """
    parsed = parse(raw, limits)
    if isinstance(parsed, Malformed):
        return Result(Outcome.MALFORMED, parsed.reason)
    item = _Item(routes, raw, parsed, sender, now, on_held)
    return (committer or GroupCommitter(db)).run(item)
