"""Storing a post, shared by live posts, approved held messages and archive imports: its
thread chosen (core.threads over the parents and the subject found here), the post and its
search row inserted, its thread touched and its one fan-out job queued, all in the
caller's transaction, through statements compiled once (store.fastpath).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Insert, Table, bindparam, insert, select, update

from listserv.core import replytext, threads
from listserv.core.addresses import Route
from listserv.core.message import Parsed
from listserv.store import search
from listserv.store.fastpath import FastStatement
from listserv.store.models import FanoutJob, Held, MailingList, Post, Thread

_THREAD_TAG_RE = re.compile(r"^t(\d{1,18})$")
_lists, _posts, _held = MailingList.__table__, Post.__table__, Held.__table__
_threads, _jobs = Thread.__table__, FanoutJob.__table__

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
_NEW_THREAD, _NEW_POST, _NEW_JOB, _TOUCH = map(
    FastStatement, (_INSERT_THREAD, _INSERT_POST, _INSERT_JOB, _TOUCH_THREAD))
_INDEX = {dialect: FastStatement(statement) for dialect, statement in search.INSERTS.items()}


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

