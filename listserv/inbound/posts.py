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
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    Insert,
    Table,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.config import LimitsConfig
from listserv.core import commands, dmarc, policy, replytext, robots, threads
from listserv.core.addresses import Route, list_id
from listserv.core.message import Malformed, Parsed, parse
from listserv.core.replies import Outcome, combine
from listserv.store import search
from listserv.store.database import Database, is_disk_full
from listserv.store.models import (
    FanoutJob,
    Held,
    ListPolicy,
    ListRole,
    MailingList,
    Member,
    Post,
    Thread,
)

log = logging.getLogger(__name__)

DAY = timedelta(hours=24)  # the window of the daily limits: the last 24 hours
_THREAD_TAG_RE = re.compile(r"^t(\d{1,18})$")

# Called in the storing transaction when a message is held: (session, list, held row,
# parsed message, envelope sender, now); moderation.on_held notifies poster and moderators.
OnHeld = Callable[[Session, MailingList, Held, Parsed, str, datetime], None]
# Called in the storing transaction when a message to the list is a command in plain words:
# (session, list, parsed message, raw, envelope sender, the command, now).
OnCommand = Callable[[Session, MailingList, Parsed, bytes, str, commands.Command, datetime],
                     None]


@dataclass(frozen=True)
class Authenticity:
    """How a forged From is told: the authserv-id of the front MTA whose
    Authentication-Results we trust, and how to learn whether a domain publishes DMARC
    (a cached DNS lookup; None: no lookups, only an explicit dmarc=fail counts)."""

    authserv_id: str
    policy_of: Callable[[str], str | None] | None = None

    def forged(self, parsed: Parsed) -> str | None:
        """Why the From may be forged, or None (also when the front MTA recorded nothing)."""
        if parsed.author_address is None:
            return None
        domain = parsed.author_address.rpartition("@")[2]
        found = dmarc.checked([v for k, v in parsed.headers
                               if k.lower() == "authentication-results"],
                              self.authserv_id, domain)
        published = None
        if (found is not None and found.dmarc is None and not found.aligned_pass
                and self.policy_of is not None):
            published = self.policy_of(domain)
        return dmarc.forged_reason(found, domain, published)


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


# The hot path speaks SQLAlchemy Core on the transaction's connection: each statement is
# built once here, so a post costs a few executions instead of ORM flushes.
_lists, _members, _posts, _held = (MailingList.__table__, Member.__table__, Post.__table__,
                                   Held.__table__)
_threads, _jobs, _roles = Thread.__table__, FanoutJob.__table__, ListRole.__table__
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

_PARENTS = select(_posts.c.message_id, _posts.c.id, _posts.c.thread_id).where(
    _posts.c.list_id == bindparam("list_id"),
    _posts.c.message_id.in_(bindparam("candidates", expanding=True)))
_SUBJECT_MATCH = (
    select(_threads.c.id, _threads.c.last_activity)
    .where(_threads.c.list_id == bindparam("list_id"),
           _threads.c.subject_key == bindparam("key"))
    .order_by(_threads.c.last_activity.desc()).limit(1))
_TAGGED = select(_threads.c.id).where(_threads.c.id == bindparam("thread_id"),
                                      _threads.c.list_id == bindparam("list_id"))
_TOUCH_THREAD = (update(_threads).where(_threads.c.id == bindparam("thread_id"))
                 .values(last_activity=bindparam("now"), post_count=_threads.c.post_count + 1))


def _inserting(table: Table, *columns: str) -> Insert:
    """INSERT of these columns (every one given, defaults included), returning the new id."""
    return insert(table).values({c: bindparam(c) for c in columns}).returning(table.c.id)


_INSERT_THREAD = _inserting(_threads, "list_id", "subject", "subject_key", "started_at",
                            "last_activity", "post_count")
_INSERT_POST = _inserting(_posts, "list_id", "thread_id", "parent_id", "message_id",
                          "author_address", "author_name", "subject", "date", "received_at",
                          "body", "new_text", "raw", "imported")
_INSERT_JOB = _inserting(_jobs, "post_id", "cursor", "done", "created_at")


class _FastStatement:
    """A statement of every post, compiled once per dialect and run on the DBAPI cursor.

    SQLAlchemy's work per execution (cache key, result objects, bind processing) was most of
    the writer's database time (measured with py-spy and cProfile). The values still go
    through each column type's own bind processor, so rows are stored exactly as the ORM
    stores them, and driver errors are raised as SQLAlchemy's, like any other statement's.
    The statement runs in the transaction the caller's Connection has begun.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def run(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Execute with `values`; the DBAPI cursor, to fetch the rows from."""
        dialect = conn.dialect
        compiled = self._by_dialect.get(dialect.name) or self._compile(dialect)
        params = {**compiled.constants, **values}
        for name, process in compiled.processors.items():
            params[name] = process(params[name])
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, params)
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(compiled.sql, params, exc, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from exc
        return cursor

    def _compile(self, dialect: Dialect) -> _Compiled:
        # Named parameters on every dialect, so one dict of values serves them all.
        named = type(dialect)(paramstyle="named") if dialect.positional else dialect
        compiled = self.statement.compile(dialect=named)
        processors = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[name] = process
        constants = {name: bind.value for name, bind in compiled.binds.items()
                     if not bind.required}
        self._by_dialect[dialect.name] = _Compiled(compiled.string, processors, constants)
        return self._by_dialect[dialect.name]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    processors: dict[str, Callable[[Any], Any]]
    constants: dict[str, Any]  # the values written into the statement ("moderated")


_FACTS, _NEW_THREAD, _NEW_POST, _NEW_JOB, _TOUCH = map(
    _FastStatement, (_LIST_AND_FACTS, _INSERT_THREAD, _INSERT_POST, _INSERT_JOB, _TOUCH_THREAD))
_INDEX = {dialect: _FastStatement(statement) for dialect, statement in search.INSERTS.items()}


@dataclass(frozen=True)
class ListRow:
    """What storing a post needs of its list (a row, not an ORM object)."""

    id: int
    address: str
    subject_prefix: str


def tagged_thread(conn: Connection, list_id: int, detail: str | None) -> int | None:
    """The thread named by a reply tag, if it is well formed and belongs to this list."""
    match = _THREAD_TAG_RE.match(detail or "")
    if not match:
        return None
    return conn.scalar(_TAGGED, {"thread_id": int(match[1]), "list_id": list_id})


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
    def of(cls, parsed: Parsed, sender: str, routes: Sequence[Route],
           authenticity: Authenticity | None = None) -> Prepared:
        headers: dict[str, list[str]] = {}
        for name, value in parsed.headers:
            headers.setdefault(name, []).append(value)
        addresses = {r.list_address or "" for r in routes}
        new_text = replytext.new_text(parsed.text)
        subject = commands.strip_reply_prefix(parsed.subject)
        in_discussion = bool(parsed.parent_candidates) or subject != parsed.subject.strip()
        command = commands.classify(new_text if new_text.strip() else subject, in_discussion)
        return cls(parsed, new_text, {
            address: robots.robot_reason(headers, envelope_sender=sender,
                                         our_list_ids=[list_id(address)],
                                         our_loop_value=address)
            for address in addresses}, authenticity.forged(parsed) if authenticity else None,
            command)


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


def store_post(
    conn: Connection, ml: ListRow, parsed: Parsed, raw: bytes, route: Route | None,
    now: datetime, new_text: str | None = None, *, imported: bool = False,
) -> int:
    """Insert the post, open or touch its thread, index it for search, and queue its one
    fan-out job (unless `imported` from an archive: sent to no one, in no digest); the id.
    `new_text` is the author's own words, when worked out already."""
    candidates = parsed.parent_candidates
    known: dict[str, tuple[int, int]] = {}
    if candidates:
        rows = conn.execute(_PARENTS, {"list_id": ml.id, "candidates": list(candidates)})
        known = {mid: (pid, tid) for mid, pid, tid in rows}
    is_reply, clean = threads.split_markers(parsed.subject, ml.subject_prefix)
    key = threads.subject_key(parsed.subject, ml.subject_prefix)
    match = None
    if is_reply and not known:  # the subject decides only for a reply with no known parent
        found = conn.execute(_SUBJECT_MATCH, {"list_id": ml.id, "key": key}).first()
        match = (found[0], found[1]) if found else None
    choice = threads.choose(
        candidates, known, parsed.subject, ml.subject_prefix, match, now,
        tagged_thread(conn, ml.id, route.detail) if route is not None else None,
    )
    thread_id = choice.thread_id
    if thread_id is None:
        thread_id = _NEW_THREAD.run(conn, {
            "list_id": ml.id, "subject": clean or "(no subject)", "subject_key": key,
            "started_at": now, "last_activity": now, "post_count": 1,
        }).fetchone()[0]
    else:
        _TOUCH.run(conn, {"thread_id": thread_id, "now": now})
    if new_text is None:
        new_text = replytext.new_text(parsed.text)
    post_id: int = _NEW_POST.run(conn, {
        "list_id": ml.id,
        "thread_id": thread_id,
        "parent_id": choice.parent_post_id,
        "message_id": parsed.message_id,
        "author_address": parsed.author_address,
        "author_name": parsed.author_name,
        "subject": parsed.subject,
        "date": parsed.date,
        "received_at": now,
        "body": parsed.text,
        "new_text": new_text,
        "raw": raw,
        "imported": imported,
    }).fetchone()[0]
    dialect = conn.dialect.name
    _INDEX[dialect].run(conn, search.row(dialect, post_id, ml.id, clean or parsed.subject,
                                         new_text))
    if not imported:
        _NEW_JOB.run(conn, {"post_id": post_id, "cursor": 0, "done": False, "created_at": now})
    return post_id


def list_row(conn: Connection, address: str) -> ListRow | None:
    """The list storing posts need, by its address."""
    row = conn.execute(select(_lists.c.id, _lists.c.address, _lists.c.subject_prefix)
                       .where(_lists.c.address == address)).first()
    return ListRow(*row) if row else None


def stored_ids(conn: Connection, list_pk: int, message_ids: Sequence[str]) -> set[str]:
    """Which of these Message-IDs the list holds already (posts and held messages)."""
    found: set[str] = set()
    for table in (_posts, _held):
        found.update(conn.scalars(select(table.c.message_id).where(
            table.c.list_id == list_pk, table.c.message_id.in_(list(message_ids)))))
    return found


def store_archived(conn: Connection, ml: ListRow, parsed: Parsed, raw: bytes,
                   fallback_date: datetime, new_text: str | None = None) -> int:
    """Store a message of an imported archive as a post, by the rules of live posts
    (threading by In-Reply-To, References, then subject; text trimmed alike), dated by its
    own Date, and sent to no one; the post id. The caller checked it is not stored yet."""
    return store_post(conn, ml, parsed, raw, None, parsed.date or fallback_date, new_text,
                      imported=True)


class _Transaction:
    """A group's transaction: the posts are Core statements on its connection; an ORM
    session joined to it is made only when a message is held (measured: a session per
    group cost as much CPU as parsing its posts)."""

    def __init__(self, conn: Connection, session: Session | None = None) -> None:
        self.conn = conn
        self._session = session

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(bind=self.conn, expire_on_commit=False)
        return self._session

    def flush(self) -> None:
        """Write what the session holds (notices of held messages) before the commit."""
        if self._session is not None:
            self._session.flush()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def _apply(
    tx: _Transaction, routes: Sequence[Route], raw: bytes, prepared: Prepared, sender: str,
    now: datetime, on_held: OnHeld | None = None, on_command: OnCommand | None = None,
) -> Result:
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
                subject=list_parsed.subject,
                reason=decision.reason,
                received_at=now,
                # The envelope sender is kept as RFC 5321 records it, for later notices.
                raw=f"Return-Path: <{_clean(sender)}>\r\n".encode() + list_raw,
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
    prepared = Prepared.of(parsed, sender, [route], authenticity)
    return _apply(_Transaction(session.connection(), session), [route], raw, prepared, sender,
                  now, on_held)


def _clean(address: str) -> str:
    return address.replace("\r", "").replace("\n", "").replace(">", "")


@dataclass
class _Item:
    """One message waiting for a group commit, and what became of it."""

    routes: Sequence[Route]
    raw: bytes
    parsed: Parsed | Malformed | None  # None: parsed by the writer, with `limits`
    sender: str
    now: datetime
    on_held: OnHeld | None
    limits: LimitsConfig | None = None
    on_command: OnCommand | None = None
    authenticity: Authenticity | None = None
    result: Result | None = None
    error: BaseException | None = None
    future: Future[Result] = field(default_factory=Future)

    def settle(self) -> None:
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            assert self.result is not None
            self.future.set_result(self.result)


class GroupCommitter:
    """Writes the messages that arrive together in ONE transaction, so they share one fsync.

    One writer thread takes every message waiting and commits them together; each sender
    is answered when the transaction holding its message has committed (or failed). A
    single writer also means one thread hand-off per message and no threads of ours
    fighting for the GIL or SQLite's lock. The thread starts with the first message and
    ends after `idle` seconds without one, so nothing needs to stop it.
    """

    def __init__(self, db: Database, idle: float = 5.0) -> None:
        self.db = db
        self.idle = idle
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._busy = False
        self._writer: threading.Thread | None = None

    def submit(self, item: _Item) -> Future[Result]:
        with self._cond:
            self._pending.append(item)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="group-commit",
                                                daemon=True)
                self._writer.start()
            self._cond.notify()
        return item.future

    def run(self, item: _Item) -> Result:
        return self.submit(item).result()

    def _write(self) -> None:
        while True:
            with self._cond:
                if not self._pending and not self._cond.wait_for(lambda: self._pending,
                                                                 self.idle):
                    self._writer = None
                    return
                batch, self._pending = self._pending, []
                self._busy = True
            try:
                ready = _prepare(batch)
                with self.db.writing():
                    # What arrived while this writer parsed or waited for its turn (another
                    # process committing) joins this transaction instead of the next one.
                    with self._cond:
                        late, self._pending = self._pending, []
                    batch += late
                    _store(self.db, ready + _prepare(late))
            except BaseException as exc:  # never leave a sender waiting for an answer
                for item in batch:
                    item.result, item.error = None, exc
            finally:
                with self._cond:
                    self._busy = False
                for item in batch:
                    item.settle()


def _prepare(batch: list[_Item]) -> list[tuple[_Item, Prepared]]:
    """Parse and prepare the messages of a batch; the malformed are answered at once.

    Preparing touches no database, so a failure here is caused by the message's bytes and
    would recur on every retry: it is a 554 for that message, never a 451 and an
    emergency copy per retry.
    """
    ready = []
    for item in batch:
        try:
            if item.parsed is None:
                item.parsed = parse(item.raw, item.limits or LimitsConfig())
            if isinstance(item.parsed, Malformed):
                item.result = Result(Outcome.MALFORMED, item.parsed.reason)
            else:
                ready.append((item, Prepared.of(item.parsed, item.sender, item.routes,
                                                item.authenticity)))
        except Exception as exc:  # a bug met by this message alone: the others go on
            log.exception("preparing a message from %r failed", item.sender)
            item.result = Result(Outcome.MALFORMED, f"unparseable ({type(exc).__name__})")
    return ready


def _commit(db: Database, batch: list[_Item]) -> None:
    _store(db, _prepare(batch))


def _store(db: Database, ready: list[tuple[_Item, Prepared]]) -> None:
    """Apply the prepared messages of a batch in one transaction and commit it once.

    First all together; if one of them fails, the batch is applied again with each message
    in its own SAVEPOINT, so a message that fails rolls back alone (a copy of the same
    Message-ID committed meanwhile by another process is then seen as a duplicate). A
    failed commit fails every message of the group, and nothing of it is stored.
    """
    if not ready:
        return
    try:
        try:
            with db.transaction() as conn:
                tx = _Transaction(conn)
                try:
                    for item, prepared in ready:
                        item.result = _apply(tx, item.routes, item.raw, prepared,
                                             item.sender, item.now, item.on_held,
                                             item.on_command)
                    tx.flush()
                finally:
                    tx.close()
            return
        except IntegrityError:
            pass  # a copy committed meanwhile by another process: found below
        except SQLAlchemyError:
            raise  # the database, not a message: the group fails
        except Exception:
            pass  # a bug met by one message: found below, message by message
        with db.session() as session:
            for item, prepared in ready:
                _apply_alone(session, item, prepared)
    except Exception as exc:
        # SQLite may have rolled back the whole transaction (a full disk) before the
        # savepoint was: report the cause, not the failed ROLLBACK TO.
        cause: BaseException | None = exc
        while cause is not None and not is_disk_full(cause):
            cause = cause.__context__
        if len(ready) > 1:
            log.error("group commit of %d messages failed: %s", len(ready), exc)
        for item, _prepared in ready:
            item.result, item.error = None, cause or exc


def _apply_alone(session: Session, item: _Item, prepared: Prepared) -> None:
    """Apply one message of a group in its savepoint, so that its failure is its own."""
    item.result = item.error = None
    for _attempt in range(2):
        try:
            with session.begin_nested():
                item.result = _apply(_Transaction(session.connection(), session), item.routes,
                                     item.raw, prepared, item.sender, item.now, item.on_held,
                                     item.on_command)
            item.error = None
            return
        except IntegrityError as exc:
            # A copy of the same Message-ID committed meanwhile by another process:
            # applied again, the message is seen as a duplicate.
            item.error = exc
        except SQLAlchemyError:
            raise  # the database, not this message: the group fails
        except Exception as exc:  # a bug met by this message alone: the others go on
            item.error = exc
            return


def receive(
    db: Database,
    routes: Sequence[Route],
    raw: bytes,
    sender: str,
    limits: LimitsConfig,
    now: datetime,
    on_held: OnHeld | None = None,
    committer: GroupCommitter | None = None,
    authenticity: Authenticity | None = None,
    on_command: OnCommand | None = None,
) -> Future[Result]:
    """Parse, decide and store one message for its list recipients, all or nothing.

    The future resolves only after the transaction holding the message committed; with a
    committer, that transaction may also hold messages of other sessions. Database errors
    are raised from it: the caller answers 451 and nothing was stored. A concurrent copy
    of the same Message-ID (a client retrying on another connection) shows up as a
    unique-constraint conflict; the message is then applied once more and seen as a
    duplicate.
    """
    item = _Item(routes, raw, None, sender, now, on_held, limits, on_command, authenticity)
    if committer is not None:
        return committer.submit(item)
    _commit(db, [item])
    item.settle()
    return item.future
