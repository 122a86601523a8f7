"""Group commit: the messages that arrive together are written in ONE transaction, so they
share one fsync, and each sender is answered only after the transaction holding its
message committed (or failed).

What a message needs is a `Job`: `prepare` does the work that needs no database (parsing,
classifying), outside the writer lock, so other processes write meanwhile; `apply` runs
its statements in the group's `Transaction`. One writer thread takes every job waiting: one
thread hand-off per message, and no threads of ours fighting for the GIL or SQLite's lock.
`commit` runs a group in the caller's thread the same way (scripts, benchmarks).

If one job of a group fails, the group is applied again in a new transaction with each
job in its own SAVEPOINT, so a job that fails rolls back alone; the same apply, the same
kind of transaction. A failed commit fails every job of its group, and nothing of it is
stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.store.database import Database, is_disk_full

log = logging.getLogger(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Transaction:
    """The group's transaction: Core statements on its connection; an ORM session joined to
    it is made only when a job asks for one (measured: a session per group cost as much
    CPU as parsing its posts, and only held messages and commands need one)."""

    def __init__(self, conn: Connection, session: Session | None = None) -> None:
        self.conn = conn
        self._session = session

    @property
    def session(self) -> Session:
        if self._session is None:
            # rollback_only: the session never commits, nor opens a savepoint of its own
            # that closing it would roll back; the connection's transaction is the group's.
            self._session = Session(bind=self.conn, expire_on_commit=False,
                                    join_transaction_mode="rollback_only")
        return self._session

    def flush(self) -> None:
        """Write what the session holds (notices of held messages) before the commit."""
        if self._session is not None:
            self._session.flush()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


class Job(Protocol[R_co]):
    """One message's work in a group commit."""

    def prepare(self) -> R_co | None:
        """The work that needs no database; an answer when the job needs no transaction."""

    def apply(self, tx: Transaction) -> R_co:
        """Its statements in the group's transaction; its answer once that commits."""


@dataclass(eq=False)
class _Entry(Generic[R]):
    """A job in a group, and what became of it."""

    job: Job[R]
    answer: R | None = None
    error: BaseException | None = None
    future: Future[R] = field(default_factory=Future)

    def settle(self) -> None:
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            assert self.answer is not None
            self.future.set_result(self.answer)


class GroupCommitter:
    """The writer thread. It starts with the first job and ends after `idle` seconds
    without one, so nothing needs to stop it."""

    def __init__(self, db: Database, idle: float = 5.0) -> None:
        self.db = db
        self.idle = idle
        self._cond = threading.Condition()
        self._pending: list[_Entry[object]] = []
        self._busy = False
        self._writer: threading.Thread | None = None

    def submit(self, job: Job[R]) -> Future[R]:
        """Queue `job` for the next group; its answer once its transaction committed."""
        entry = _Entry(job)
        with self._cond:
            self._pending.append(entry)  # type: ignore[arg-type]
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="group-commit",
                                                daemon=True)
                self._writer.start()
            self._cond.notify()
        return entry.future

    @property
    def queued(self) -> int:
        """How many jobs wait for the writer to take them into a group."""
        with self._cond:
            return len(self._pending)

    @property
    def writing(self) -> bool:
        """Whether the writer holds a group it has not answered yet (preparing it, waiting
        for its turn at the database, or writing it)."""
        with self._cond:
            return self._busy

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
                for entry in batch:
                    entry.answer, entry.error = None, exc
            finally:
                with self._cond:
                    self._busy = False
                for entry in batch:
                    entry.settle()


def commit(db: Database, jobs: Sequence[Job[R]]) -> list[Future[R]]:
    """Prepare and commit `jobs` as one group in the caller's thread, as the writer thread
    does; their answers, settled."""
    batch = [_Entry(job) for job in jobs]
    try:
        _store(db, _prepare(batch))
    except BaseException as exc:  # raised from each future, as for the writer's groups
        for entry in batch:
            entry.answer, entry.error = None, exc
    for entry in batch:
        entry.settle()
    return [entry.future for entry in batch]


def _prepare(batch: Sequence[_Entry[R]]) -> list[_Entry[R]]:
    """Prepare the jobs of a batch; those answered already (a malformed message) are left
    out of the transaction, and a job whose preparing fails fails alone."""
    ready = []
    for entry in batch:
        try:
            entry.answer = entry.job.prepare()
        except Exception as exc:
            entry.error = exc
            continue
        if entry.answer is None:
            ready.append(entry)
    return ready


def _store(db: Database, ready: list[_Entry[R]]) -> None:
    """Apply the prepared jobs in one transaction and commit it once; if one of them fails,
    again with each in its own savepoint (a copy of the same Message-ID committed
    meanwhile by another process is then seen as a duplicate)."""
    if not ready:
        return
    try:
        try:
            with db.transaction() as conn:
                _apply(conn, ready, alone=False)
            return
        except IntegrityError:
            pass  # a copy committed meanwhile by another process: found below
        except SQLAlchemyError:
            raise  # the database, not a message: the group fails
        except Exception:
            pass  # a bug met by one message: found below, message by message
        with db.transaction() as conn:
            _apply(conn, ready, alone=True)
    except Exception as exc:
        # SQLite may have rolled back the whole transaction (a full disk) before the
        # savepoint was: report the cause, not the failed ROLLBACK TO.
        cause: BaseException | None = exc
        while cause is not None and not is_disk_full(cause):
            cause = cause.__context__
        if len(ready) > 1:
            log.error("group commit of %d messages failed: %s", len(ready), exc)
        for entry in ready:
            entry.answer, entry.error = None, cause or exc


def _apply(conn: Connection, ready: list[_Entry[R]], *, alone: bool) -> None:
    """Apply every job in `conn`'s transaction: all together, or each `alone` in its own
    savepoint (and its own session, so that what one flushed never outlives its rollback)."""
    if not alone:
        tx = Transaction(conn)
        try:
            for entry in ready:
                entry.answer = entry.job.apply(tx)
            tx.flush()
        finally:
            tx.close()
        return
    for entry in ready:
        entry.answer = entry.error = None
        for _attempt in range(2):
            tx = Transaction(conn)
            try:
                with conn.begin_nested():
                    entry.answer = entry.job.apply(tx)
                    tx.flush()
                entry.error = None
                break
            except IntegrityError as exc:
                # A copy of the same Message-ID committed meanwhile by another process:
                # applied again, the message is seen as a duplicate.
                entry.error = exc
            except SQLAlchemyError:
                raise  # the database, not this message: the group fails
            except Exception as exc:  # a bug met by this message alone: the others go on
                entry.error = exc
                break
            finally:
                tx.close()
