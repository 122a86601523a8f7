"""Engine, sessions and the schema; the only place that knows which database we run on."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from listserv.store import migrate, search
from listserv.store.models import Base, MailingList

# Errors that mean "the database cannot take this now": the receiver answers 451 and the
# client retries, which is how SMTP is meant to survive a database restart or a lock.
TEMPORARY_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError,)


def is_disk_full(exc: BaseException) -> bool:
    """A full disk, wherever the error surfaced (OS, SQLite, PostgreSQL)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, DBAPIError):
        text = str(exc.orig).lower()
        return "database or disk is full" in text or "no space left" in text
    return False


class SchemaBehind(SQLAlchemyError):
    """The database needs `listserv db upgrade` before this listserv can use it."""


# Rows inserted into a table in bulk after which PostgreSQL gets fresh statistics: at least
# this many, and half as many as the table held when last analyzed.
ANALYZE_AFTER = 1000

# Execution option of Database.read(): on SQLite a plain BEGIN, which takes no write lock.
READ_ONLY = "listserv_read_only"


def make_engine(url: str, busy_timeout: float = 5.0) -> Engine:
    """An engine with the settings durability needs.

    SQLite runs in WAL mode with synchronous=FULL, so a commit is on disk before we answer
    250, and every transaction starts with BEGIN IMMEDIATE: a writer waits for the lock up
    front (busy_timeout) instead of failing half way when two writers meet.
    """
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            _enable_wal(cur, busy_timeout)
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _pg_connect(dbapi_conn: Any, _record: Any) -> None:
        # The PostgreSQL twin of SQLite's busy_timeout: a writer blocked by a lock gives up
        # after busy_timeout, so the receiver answers 451 instead of hanging the session.
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET lock_timeout = {int(busy_timeout * 1000)}")
        dbapi_conn.commit()

    return engine


def _enable_wal(cursor: Any, busy_timeout: float) -> None:
    """Switch a SQLite database to WAL. The switch needs the database to itself, and SQLite
    refuses it at once, without its busy handler, while another connection is opening it
    (seen when processes start together on a new database): so try again until
    busy_timeout."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    path = url.split("///", 1)[1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


class WriterLock:
    """SQLite has one writer at a time: its writers queue here, in order, without sleeping.

    Threads of this process queue on a lock; processes (receivers, dispatcher, CLI) on an
    flock of a file beside the database, which the kernel hands over the moment it is
    released (and releases if its holder dies). Without it they meet SQLite's busy handler,
    which polls with sleeps of up to 100 ms (measured: p99 ingest 360 ms with threads, 112
    ms with two receiver processes; polling the flock every millisecond cost 12% of the
    throughput). Re-entrant within a thread. A writer waits as long as the holder's
    transaction lasts; a writer that is not ours still meets busy_timeout.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path.with_name(path.name + "-writer") if path else None
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._lock.acquire()
        if self._depth == 0 and self.path is not None:
            try:
                self._flock()
            except BaseException:
                self._lock.release()
                raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _flock(self) -> None:
        if self._fd is None:
            assert self.path is not None
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._inserted: dict[str, int] = {}
        self._analyzed_rows: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                     expire_on_commit=False)
        self._writer: AbstractContextManager[Any] = (
            WriterLock(sqlite_path(url)) if url.startswith("sqlite")
            else nullcontext()
        )

    def writing(self) -> AbstractContextManager[Any]:
        """This process's turn at writing, held across transactions (SQLite: the writer
        lock, re-entrant; PostgreSQL needs none)."""
        return self._writer

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._writer, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on a Core connection, for a hot path that needs no ORM session:
        committed when the block ends, rolled back if it raises."""
        with self.engine.connect() as conn, self._writer, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction that only reads: it never waits for, nor blocks, a writer."""
        with self._readers() as session, session.begin():
            yield session

    def schema_revision(self) -> str | None:
        """The schema's alembic revision, read with one query; None for a database without
        a version table."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(migrate.VERSION_TABLE):
                return None
            return conn.execute(text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")).scalar()

    def create_schema(self) -> None:
        """Make the schema current: an empty database gets the models' tables, stamped as
        migrated to head; an older one (or one from before migrations) is migrated.
        Run by `serve` (`db init` and `db upgrade` migrate through `migrate.upgrade`);
        other commands only `check_schema`."""
        if self.schema_revision() == migrate.SCHEMA_HEAD:
            return
        with self.engine.begin() as conn:
            migrate.lock_schema(conn)
            if not inspect(conn).get_table_names():
                Base.metadata.create_all(conn)
                search.create(conn)
                migrate.stamp_head(conn)
                return
        if migrate.current(self.engine) != migrate.head():
            migrate.upgrade(self.engine)

    def check_schema(self) -> None:
        """For a command: a new database gets the schema; an older one is left for
        `listserv db upgrade` to migrate, never changed by a command that only reads or
        adds a member."""
        revision = self.schema_revision()
        if revision == migrate.SCHEMA_HEAD:
            return
        if revision is None:
            with self.engine.connect() as conn:
                empty = not inspect(conn).get_table_names()
            if empty:
                self.create_schema()
                return
        raise SchemaBehind(
            f"database schema is at revision {revision or 'none (made before migrations)'}, "
            f"this listserv needs {migrate.SCHEMA_HEAD}: run `listserv db upgrade`"
        )

    def inserted(self, table: str, rows: int) -> None:
        """Note rows just committed in bulk (a fan-out, a digest run); on PostgreSQL, analyze
        the table once they are many, rather than when autovacuum comes by a minute later.

        psycopg prepares a statement run five times and PostgreSQL then keeps a generic plan
        made from the statistics of that moment. Measured: the outbox's claim query, planned
        while deliveries was empty, took 40 s per claim once a fan-out had queued 20,000 rows
        (25 ms after ANALYZE, which also drops the stale plan). SQLite needs no statistics
        for these queries.
        """
        if self.engine.dialect.name != "postgresql":
            return
        with self._counts_lock:
            pending = self._inserted.get(table, 0) + rows
            if pending < max(ANALYZE_AFTER, self._analyzed_rows.get(table, 0) // 2):
                self._inserted[table] = pending
                return
            self._inserted[table] = 0
        name = self.engine.dialect.identifier_preparer.quote(table)
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"ANALYZE {name}")
            known = conn.exec_driver_sql(
                f"SELECT reltuples FROM pg_class WHERE oid = '{name}'::regclass").scalar()
        with self._counts_lock:
            self._analyzed_rows[table] = int(known or 0)

    def dispose(self) -> None:
        self.engine.dispose()
        if isinstance(self._writer, WriterLock):
            self._writer.close()


def list_addresses(session: Session) -> set[str]:
    return set(session.scalars(select(MailingList.address)))


def get_list(session: Session, address: str) -> MailingList | None:
    return session.scalar(select(MailingList).where(MailingList.address == address))


def insert_ignore(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """INSERT that skips rows conflicting with a unique constraint (idempotent batches)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # The Core table, not the ORM class: the ORM's bulk insert spends more on its
    # bookkeeping per row than SQLite on the row (a round of 500 deliveries, py-spy).
    session.execute(insert(model.__table__).on_conflict_do_nothing(), rows)


def bulk_insert(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """New rows (each naming the same columns) in few round trips, in the session's
    transaction: COPY on PostgreSQL, where even batched INSERTs run at half its speed;
    executemany elsewhere. Columns the rows leave out take their Python-side defaults."""
    if not rows:
        return
    bind = session.get_bind()
    table = model.__table__
    if bind.dialect.name != "postgresql":
        session.execute(insert(table), rows)  # the Core table: no ORM bookkeeping per row
        return
    given = list(rows[0])
    defaults = {
        c.name: c.default.arg
        for c in table.columns
        if c.name not in given and c.default is not None and c.default.is_scalar
    }
    quote = bind.dialect.identifier_preparer
    names = ", ".join(quote.quote(name) for name in [*given, *defaults])
    sql = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
    dbapi = bind.dialect.loaded_dbapi
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([*(row[name] for name in given), *defaults.values()])
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
    finally:
        cursor.close()
