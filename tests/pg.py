"""PostgreSQL for the test suite: which server, whether it is up, a fresh schema per test.

The suite runs every database test on SQLite and on PostgreSQL. The server is
LISTSERV_TEST_DATABASE_URL (default: the CI service at 127.0.0.1:5432, database `test`).
When it is unreachable the PostgreSQL cases skip with the reason, except under CI=true,
where they fail: CI must never pass by skipping half the suite.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def postgres_url() -> str:
    return os.environ.get("LISTSERV_TEST_DATABASE_URL") or DEFAULT_URL


@cache
def _unreachable(url: str) -> str | None:
    """Why the server cannot be used, or None; asked once per run."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    return None


def postgres_url_or_skip() -> str:
    url = postgres_url()
    why = _unreachable(url)
    if why is not None:
        where = make_url(url).render_as_string(hide_password=True)
        message = f"PostgreSQL at {where} unreachable ({why}); set LISTSERV_TEST_DATABASE_URL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A URL whose connections see only a new empty schema; dropped with its tables after."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield str(make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def write_locked(url: str) -> Iterator[None]:
    """Another connection holds the write lock on posts, as a busy peer process would."""
    if url.startswith("sqlite"):
        locker = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE posts IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()
