"""Posts: a message to a list, decided by the list's rules and stored, held or refused.

For each list it was sent to: every fact the policy needs, in one query; then
`core.policy.decide`; then the post is stored (`store.posts`: thread, search row, one
fan-out job), or held (moderation is told, through the door), or taken as a command in
plain words (requests is told). The group-commit writer (`groupcommit`) runs this for every
message waiting, in ONE write transaction: the durability point, after which each sender
is answered 250.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.utils import format_datetime

from sqlalchemy import ColumnElement, Connection, Table, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session

from listserv.core import commands, policy, replytext
from listserv.core.addresses import MAX_ADDRESS, Route
from listserv.core.message import Malformed, Parsed
from listserv.core.replies import Outcome, combine
from listserv.inbound.groupcommit import Transaction
from listserv.inbound.incoming import (
    Authenticity,
    Door,
    Incoming,
    OnCommand,
    OnHeld,
    receiver_log,
)
from listserv.store.fastpath import FastStatement
from listserv.store.models import Held, ListPolicy, ListRole, MailingList, Member, Post
from listserv.store.posts import ListRow, store_post

log = logging.getLogger(__name__)

DAY = timedelta(hours=24)  # the window of the daily limits: the last 24 hours


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


def ensure_date(raw: bytes, parsed: Parsed, now: datetime) -> tuple[bytes, Parsed]:
    """Give a message without a Date header (RFC 5322 requires one) the time we received
    it, in the stored bytes as in the record, so every copy and digest dates it alike."""
    if parsed.header("Date") is not None:
        return raw, parsed
    value = format_datetime(now)
    raw = f"Date: {value}\r\n".encode() + raw
    return raw, replace(parsed, date=now, headers=(("Date", value), *parsed.headers))


# The list and every fact the policy needs, on every post: built once here, compiled once
# per dialect and run on the cursor (store.fastpath).
_lists, _members, _posts, _held = (MailingList.__table__, Member.__table__, Post.__table__,
                                   Held.__table__)
_roles = ListRole.__table__
_AUTHOR, _MID = bindparam("author"), bindparam("message_id")

def _exists(table: Table, *where: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(table.c.list_id == _lists.c.id, *where)


# The list and every fact the policy needs about this author and Message-ID, in one query.
_LIST_AND_FACTS = select(
    _lists.c.id,
    _lists.c.address,
    _lists.c.subject_prefix,
    _exists(_members, func.lower(_members.c.address) == func.lower(_AUTHOR)).label("is_member"),
    or_(_exists(_posts, _posts.c.message_id == _MID),
        _exists(_held, _held.c.message_id == _MID)).label("stored"),
    select(ListPolicy.policy).where(ListPolicy.list_id == _lists.c.id)
    .scalar_subquery().label("policy"),
    _exists(_roles, func.lower(_roles.c.address) == func.lower(_AUTHOR),
            _roles.c.role == "moderated")
    .label("moderated"),
    _exists(_roles, func.lower(_roles.c.address) == func.lower(_AUTHOR),
            or_(_roles.c.role == "owner", _roles.c.role == "poster")).label("announcer"),
    _lists.c.emergency,
    _lists.c.probation,
    _lists.c.max_posts_per_day,
    _lists.c.max_list_posts_per_day,
    _exists(_members, func.lower(_members.c.address) == func.lower(_AUTHOR),
            _members.c.trusted.is_(True)).label("trusted"),
).where(_lists.c.address == bindparam("address"))
# Counted only for lists with probation or daily limits, so other lists pay nothing.
_AUTHOR_ALL = select(func.count()).select_from(_posts).where(
    _posts.c.list_id == bindparam("list_id"), _posts.c.author_address == bindparam("author"))
_AUTHOR_POSTS = _AUTHOR_ALL.where(_posts.c.received_at >= bindparam("since"))
_LIST_POSTS = select(func.count()).select_from(_posts).where(
    _posts.c.list_id == bindparam("list_id"), _posts.c.received_at >= bindparam("since"))
_FACTS = FastStatement(_LIST_AND_FACTS)


@dataclass(frozen=True)
class Prepared:
    """What is worked out of a message before its transaction, needing no database: done
    outside the writer lock, so that other processes write meanwhile."""

    parsed: Parsed
    new_text: str
    robots: dict[str, str | None]  # why it is a machine's mail, per list address
    forged: str | None = None  # why the From may not be its author (Authenticity.forged)
    command: commands.Command | commands.Maybe | None = None  # commands.classify

    @classmethod
    def of(cls, incoming: Incoming, routes: Sequence[Route],
           authenticity: Authenticity | None = None) -> Prepared:
        parsed = incoming.parsed
        assert isinstance(parsed, Parsed), "a malformed message is answered before"
        new_text = replytext.new_text(parsed.text)
        subject = commands.strip_reply_prefix(parsed.subject)
        in_discussion = bool(parsed.parent_candidates) or subject != parsed.subject.strip()
        command = commands.classify(new_text if new_text.strip() else subject, in_discussion)
        return cls(parsed, new_text,
                   {a: incoming.robot(a) for a in {r.list_address or "" for r in routes}},
                   authenticity.forged(parsed) if authenticity else None, command)


def _list_and_facts(conn: Connection, address: str, parsed: Parsed, robot: str | None,
                    forged: str | None, now: datetime,
                    command: commands.Command | commands.Maybe | None = None,
                    ) -> tuple[ListRow, policy.Facts] | None:
    row = _FACTS.run(conn, {"address": address, "author": parsed.author_address or "",
                            "message_id": parsed.message_id}).fetchone()
    if row is None:
        return None
    (list_pk, list_address, prefix, is_member, stored, posting, moderated, announcer,
     brake, probation, per_member, per_list, trusted) = row
    author = parsed.author_address or ""
    author_posts = author_today = list_today = 0
    if probation and is_member and not trusted:
        author_posts = conn.scalar(_AUTHOR_ALL, {"list_id": list_pk, "author": author}) or 0
    if per_member is not None:
        author_today = conn.scalar(_AUTHOR_POSTS, {"list_id": list_pk, "author": author,
                                                   "since": now - DAY}) or 0
    if per_list is not None:
        list_today = conn.scalar(_LIST_POSTS, {"list_id": list_pk, "since": now - DAY}) or 0
    facts = policy.Facts(
        list_address=address,
        author_is_member=bool(is_member),
        already_stored=bool(stored),
        robot=robot,
        author_forged=forged,
        posting_policy=posting or "members",
        author_is_moderated=bool(moderated),
        author_may_announce=bool(announcer),
        emergency=bool(brake),
        probation=probation or 0,
        author_posts=author_posts,
        author_trusted=bool(trusted),
        max_posts_per_day=per_member,
        author_posts_today=author_today,
        max_list_posts_per_day=per_list,
        list_posts_today=list_today,
        plain_command=command,
    )
    return ListRow(list_pk, list_address, prefix), facts


def _apply(
    tx: Transaction, routes: Sequence[Route], raw: bytes, prepared: Prepared, sender: str,
    now: datetime, on_held: OnHeld | None = None, on_command: OnCommand | None = None,
) -> Result:
    """Decide for each list the message went to, and store, hold or hand over the command,
    in `tx`: the one apply of every post (group commit, its retry, digest replies)."""
    outcomes: list[Outcome] = []
    details: list[str] = []
    post_ids: list[int] = []
    conn = tx.conn
    for route in routes:
        address = route.list_address or ""
        list_raw, list_parsed = ensure_date(*ensure_message_id(
            raw, prepared.parsed, address.rpartition("@")[2]), now)
        found = _list_and_facts(conn, address, list_parsed, prepared.robots[address],
                                prepared.forged, now, prepared.command)
        if found is None:  # deleted between RCPT and DATA
            outcomes.append(Outcome.TEMPORARY_FAILURE)
            continue
        ml, facts = found
        decision = policy.decide(list_parsed, facts)
        outcomes.append(decision.outcome)
        details.append(f"{ml.address}: {decision.reason}")
        if decision.outcome is Outcome.ACCEPTED:
            post_ids.append(store_post(conn, ml, list_parsed, list_raw, route, now,
                                       prepared.new_text))
        elif decision.outcome is Outcome.COMMAND:
            session = tx.session
            if on_command is not None and isinstance(prepared.command, commands.Command):
                on_command(session, session.get_one(MailingList, ml.id), list_parsed, raw,
                           sender, prepared.command, now)
        elif decision.outcome is Outcome.HELD:
            held = Held(
                list_id=ml.id,
                message_id=list_parsed.message_id,
                sender=list_parsed.author_address,
                # No address is longer (RFC 5321): a longer one is not kept, and notices
                # go to the From instead, when `may_tell_poster` allows.
                envelope_sender=sender if len(sender) <= MAX_ADDRESS else "",
                subject=list_parsed.subject,
                reason=decision.reason,
                received_at=now,
                raw=list_raw,
            )
            session = tx.session
            session.add(held)
            session.flush()  # seen by the next message's facts query (Core, no autoflush)
            if on_held is not None:
                on_held(session, session.get_one(MailingList, ml.id), held, list_parsed,
                        sender, now)
    return Result(combine(outcomes), "; ".join(details), tuple(post_ids))


def apply_in_session(session: Session, route: Route, raw: bytes, parsed: Parsed, sender: str,
                     now: datetime, on_held: OnHeld | None,
                     authenticity: Authenticity | None = None) -> Result:
    """Decide and store one message for one list route in the caller's transaction, as if
    it had been sent there (a reply to a digest, received at `-request`)."""
    prepared = Prepared.of(Incoming.parsed_already(raw, parsed, sender), [route], authenticity)
    return _apply(Transaction(session.connection(), session), [route], raw, prepared, sender,
                  now, on_held)


@dataclass(eq=False)
class PostJob:
    """One message for its list recipients, as the group-commit writer runs it."""

    incoming: Incoming
    routes: Sequence[Route]
    now: datetime
    authenticity: Authenticity | None = None
    on_held: OnHeld | None = None
    on_command: OnCommand | None = None
    prepared: Prepared | None = field(default=None, init=False)

    def prepare(self) -> Result | None:
        """Parse (the one parse of this message) and work out what needs no database; a
        malformed message is answered here.

        Preparing touches no database, so a failure here is caused by the message's bytes
        and would recur on every retry: it is a 554 for that message, never a 451 and an
        emergency copy per retry.
        """
        try:
            parsed = self.incoming.parsed
            if isinstance(parsed, Malformed):
                return Result(Outcome.MALFORMED, parsed.reason)
            self.prepared = Prepared.of(self.incoming, self.routes, self.authenticity)
        except Exception as exc:  # a bug met by this message alone: the others go on
            log.exception("preparing a message from %r failed", self.incoming.sender)
            return Result(Outcome.MALFORMED, f"unparseable ({type(exc).__name__})")
        return None

    def apply(self, tx: Transaction) -> Result:
        assert self.prepared is not None
        return _apply(tx, self.routes, self.incoming.raw, self.prepared, self.incoming.sender,
                      self.now, self.on_held, self.on_command)


def job(door: Door, incoming: Incoming, routes: Sequence[Route]) -> PostJob:
    """The job of a message to these list routes, with the door's clock and callbacks."""
    # One post per list, even when a list is named twice (plain and thread address).
    posts = list({r.list_address: r for r in reversed(routes)}.values())
    return PostJob(incoming, posts, door.clock(), door.authenticity(), door.on_held,
                   door.on_command)


async def receive(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """Decide and store the message for its lists, all or nothing, through the group-commit
    writer: the outcome comes once the transaction holding it committed.

    Database errors are raised: the receiver answers 451 and nothing was stored. A
    concurrent copy of the same Message-ID (a client retrying on another connection) shows
    up as a unique-constraint conflict; the message is then applied once more and seen as
    a duplicate.
    """
    result = await asyncio.wrap_future(door.committer.submit(job(door, incoming, routes)))
    receiver_log.info("%s from=%s to=%s size=%d: %s", result.outcome.value, incoming.mail_from,
                      incoming.to, len(incoming.raw), result.detail)
    if result.post_ids:
        door.on_post()
    return result.outcome
