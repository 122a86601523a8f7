"""Moving an archive in and out: mbox (mboxo or mboxrd), Maildir or a folder of .eml files
in; mboxrd out, the posts as received.

The source is streamed message by message and stored in batches, one transaction each,
so memory stays flat whatever the file's size and a crash loses at most one batch (which
the next run stores, the rest being found already stored).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, select

from listserv.config import LimitsConfig
from listserv.core import mbox, replytext
from listserv.core.message import Malformed, Parsed, parse
from listserv.store import posts, threading
from listserv.store.database import Database
from listserv.store.models import MailingList, Post

FORMATS = ("mbox", "maildir", "eml")
BATCH = 500
# An archive holds what was delivered years ago: big attachments and deep MIME are not a
# reason to refuse it, only bytes no parser can read are.
ARCHIVE_LIMITS = LimitsConfig(
    max_header_bytes=1024 * 1024,
    max_header_field_bytes=256 * 1024,
    max_mime_header_bytes=16 * 1024,
    max_mime_params=128,
    max_mime_depth=50,
    max_mime_parts=5000,
)


class ArchiveError(Exception):
    """A source that cannot be read at all (missing, unknown format): one line for the CLI."""


@dataclass
class Counts:
    """What an import did; `refused` names each message skipped, by its position."""

    imported: int = 0
    duplicates: int = 0
    refused: list[str] = field(default_factory=list)
    relinked: int = 0  # replies met before their parent, moved under it at the end

    def as_dict(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "refused": len(self.refused),
            "refused_messages": self.refused,
            "relinked": self.relinked,
        }


def detect(path: Path) -> str:
    """The format of a source: a Maildir has cur/ and new/, another folder holds .eml
    files, so does a file named .eml (one message); any other file is an mbox."""
    if path.is_dir():
        return "maildir" if (path / "cur").is_dir() and (path / "new").is_dir() else "eml"
    if path.is_file():
        return "eml" if path.suffix.lower() == ".eml" else "mbox"
    raise ArchiveError(f"{path}: no such file or folder")


def messages(path: Path, fmt: str | None = None) -> Iterator[tuple[str, bytes]]:
    """(position, raw bytes) of each message of the source, in its order, one at a time."""
    fmt = fmt or detect(path)
    if fmt == "mbox":
        if not path.is_file():
            raise ArchiveError(f"{path}: not an mbox file")
        with path.open("rb") as stream:
            yield from _mbox(stream, path.name)
    else:
        for file in files(path, fmt):
            yield (str(file.relative_to(path)) if path.is_dir() else file.name), file.read_bytes()


def files(path: Path, fmt: str) -> list[Path]:
    """The message files of a Maildir or of a folder of .eml files (or the one .eml)."""
    if path.is_file() and fmt == "eml":
        return [path]
    if not path.is_dir():
        raise ArchiveError(f"{path}: not a folder")
    if fmt == "maildir":
        return sorted(p for sub in ("cur", "new") for p in (path / sub).iterdir() if p.is_file())
    return sorted(path.rglob("*.eml"))


def _mbox(stream: BinaryIO, name: str) -> Iterator[tuple[str, bytes]]:
    lines: list[bytes] = []
    start, after_blank = 0, True
    for number, line in enumerate(stream, 1):
        if mbox.is_separator(line, after_blank):
            if lines:
                yield f"{name} message at line {start}", _joined(lines)
            lines, start = [], number
        elif start:
            lines.append(mbox.unescape(line))
        elif line.strip():
            raise ArchiveError(
                f"{name}: not an mbox (line {number} comes before any From "
                "line); a single message is read with --format eml"
            )
        after_blank = not line.strip()
    if lines:
        yield f"{name} message at line {start}", _joined(lines)


def _joined(lines: list[bytes]) -> bytes:
    """A message's bytes, without the blank line the mbox put before the next one."""
    return b"".join(lines).rstrip(b"\r\n") + b"\n"


@dataclass(frozen=True)
class Read:
    """A message worked out before its transaction (in a parsing process, if any): parsed
    with an id and a readable author, and the author's own words."""

    parsed: Parsed
    new_text: str


def _parsed(raw: bytes) -> Read | str:
    """The message read, or why it is refused."""
    parsed = parse(raw, ARCHIVE_LIMITS)
    if isinstance(parsed, Malformed):
        return parsed.reason
    if parsed.author_address is None or "@" not in parsed.author_address:
        name, address = mbox.author_of(parsed.header("From") or "")
        if address is None:
            return "no author address in From"
        parsed = replace(parsed, author_name=name, author_address=address)
    if not parsed.message_id:
        parsed = replace(parsed, message_id=mbox.content_id(raw))
    return Read(parsed, replytext.new_text(parsed.text))


def import_archive(
    db: Database,
    list_address: str,
    source: Iterable[tuple[str, bytes]],
    now: datetime,
    *,
    dry_run: bool = False,
    progress: Callable[[Counts], None] | None = None,
    workers: int = 1,
) -> Counts:
    """Store each message of `source` not stored yet as a post of the list, emailing no
    one. A dry run reads and checks everything and stores nothing. With `workers` > 1,
    that many processes parse the next batches while this one stores the current one."""
    counts = Counts()
    orphans: dict[int, tuple[str, ...]] = {}  # replies whose parent was not seen yet
    touched: set[int] = set()
    with db.transaction() as conn:
        if posts.list_row(conn, list_address) is None:
            raise ArchiveError(f"{list_address}: no such list")

    def store(batch: list[tuple[str, bytes, Read | str]]) -> None:
        with db.transaction() if not dry_run else _reading(db) as conn:
            ml = posts.list_row(conn, list_address)
            assert ml is not None
            ready: list[tuple[Read, bytes]] = []
            for position, raw, read in batch:
                if isinstance(read, str):
                    counts.refused.append(f"{position}: {read}")
                else:
                    ready.append((read, raw))
            stored = posts.stored_ids(conn, ml.id, [r.parsed.message_id or "" for r, _ in ready])
            new_ids: list[int] = []
            for read, raw in ready:
                parsed = read.parsed
                if parsed.message_id in stored:
                    counts.duplicates += 1
                    continue
                stored.add(parsed.message_id or "")
                counts.imported += 1
                if dry_run:
                    continue
                post_id = posts.store_archived(conn, ml, parsed, raw, now, read.new_text)
                new_ids.append(post_id)
                if parsed.parent_candidates:
                    orphans[post_id] = parsed.parent_candidates
            if new_ids:
                _forget_found_parents(conn, orphans, new_ids)
                touched.update(conn.scalars(select(Post.thread_id).where(Post.id.in_(new_ids))))
        if progress is not None:
            progress(counts)

    for batch in _parsed_batches(source, workers):
        store(batch)
    if not dry_run:
        with db.transaction() as conn:
            counts.relinked = _relink(conn, list_address, orphans, touched)
            threading.recount(conn, touched)
    return counts


def _batches(source: Iterable[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    batch: list[tuple[str, bytes]] = []
    for item in source:
        batch.append(item)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _parse_all(raws: list[bytes]) -> list[Read | str]:
    return [_parsed(raw) for raw in raws]


def _parsed_batches(
    source: Iterable[tuple[str, bytes]], workers: int
) -> Iterator[list[tuple[str, bytes, Read | str]]]:
    """The source's batches with each message parsed, in order. Parsing is most of an
    import's CPU: with workers, a few batches are parsed ahead in other processes (started
    by a fork server, never forked from a process that may run threads)."""
    if workers <= 1:
        for batch in _batches(source):
            yield [(position, raw, _parsed(raw)) for position, raw in batch]
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
        ahead: deque[tuple[list[tuple[str, bytes]], Future[list[Read | str]]]] = deque()
        batches = _batches(source)
        while True:
            for batch in batches:
                ahead.append((batch, pool.submit(_parse_all, [raw for _, raw in batch])))
                if len(ahead) > workers:
                    break
            if not ahead:
                return
            done, parsing = ahead.popleft()
            yield [(*item, parsed) for item, parsed in zip(done, parsing.result(), strict=True)]


@contextmanager
def _reading(db: Database) -> Iterator[Connection]:
    """A dry run's transaction: it reads what is stored and writes nothing."""
    with db.read() as session:
        yield session.connection()


def _forget_found_parents(
    conn: Connection, orphans: dict[int, tuple[str, ...]], new_ids: list[int]
) -> None:
    """Drop from `orphans` the new posts that found their nearest parent (In-Reply-To, or
    else the last of References) when stored."""
    parent = Post.__table__.alias("parent")
    for post_id, parent_mid in conn.execute(
        select(Post.id, parent.c.message_id)
        .join(parent, parent.c.id == Post.parent_id)
        .where(Post.id.in_(new_ids))
    ):
        if orphans.get(post_id, ("",))[0] == parent_mid:
            del orphans[post_id]


def _relink(
    conn: Connection, list_address: str, orphans: dict[int, tuple[str, ...]], touched: set[int]
) -> int:
    """Move each reply stored before its parent under that parent, with its own replies
    (the order of a file does not matter); how many were moved."""
    list_pk = conn.scalar(select(MailingList.id).where(MailingList.address == list_address))
    moved = 0
    for post_id, candidates in orphans.items():
        known = dict(
            conn.execute(
                select(Post.message_id, Post.id).where(
                    Post.list_id == list_pk, Post.message_id.in_(candidates), Post.id != post_id
                )
            ).all()
        )
        parent = next((known[mid] for mid in candidates if mid in known), None)
        current = conn.scalar(select(Post.parent_id).where(Post.id == post_id))
        if parent is None or parent == current:
            continue
        target = conn.scalar(select(Post.thread_id).where(Post.id == parent))
        assert target is not None
        conn.execute(Post.__table__.update().where(Post.id == post_id).values(parent_id=parent))
        touched.update(threading.move(conn, threading.subtree(conn, post_id), target))
        touched.add(target)
        moved += 1
    return moved


def export(
    db: Database,
    list_address: str,
    out: BinaryIO,
    *,
    thread_id: int | None = None,
    since: datetime | None = None,
) -> int:
    """Write the list's posts as received to `out` as mboxrd, in date order; how many."""
    with db.transaction() as conn:
        list_pk = conn.scalar(select(MailingList.id).where(MailingList.address == list_address))
        if list_pk is None:
            raise ArchiveError(f"{list_address}: no such list")
        query = (
            select(Post.author_address, Post.received_at, Post.raw)
            .where(Post.list_id == list_pk)
            .order_by(Post.received_at, Post.id)
        )
        if thread_id is not None:
            query = query.where(Post.thread_id == thread_id)
        if since is not None:
            query = query.where(Post.received_at >= since)
        written = 0
        for author, received, raw in conn.execution_options(yield_per=200).execute(query):
            out.write(mbox.mboxrd(author, received, raw))
            written += 1
    return written
