"""Schema migrations: `db upgrade` builds the same schema the models describe, on both
databases, from empty and from a database made before migrations existed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from listserv.cli import main
from listserv.config import Config
from listserv.store import migrate
from listserv.store.database import Database, make_engine
from listserv.store.models import Delivery, Notice

from .conftest import LIST, make_message

pytestmark = pytest.mark.both_databases


def test_migrated_schema_equals_the_models(cli: Any, config: Config) -> None:
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"database at revision {migrate.head()} (was empty)"
    engine = make_engine(config.database_url)
    try:
        assert migrate.differences(engine) == []
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_init_stays_the_first_step(cli: Any) -> None:
    assert cli("db", "init").exit_code == 0
    again = cli("db", "upgrade")
    assert again.exit_code == 0, again.output
    assert again.output.strip() == f"database at revision {migrate.head()} (was {migrate.head()})"
    assert cli("lists", "create", "living-with-als", "--title", "ALS").exit_code == 0


def test_database_from_before_migrations_is_adopted_with_its_data(
    cli: Any, config: Config
) -> None:
    # How the core made its schema: revision 0001's tables, no version table.
    engine = make_engine(config.database_url)
    migrate.upgrade(engine, migrate.BASELINE)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {migrate.VERSION_TABLE}"))
        conn.execute(text(
            "INSERT INTO lists (address, title, description, subject_prefix, from_rewrite,"
            " digest_hour, timezone, created_at) VALUES (:a, 'ALS', '', '', 'always', 7, 'UTC',"
            " CURRENT_TIMESTAMP)"), {"a": LIST})
        conn.execute(text(
            "INSERT INTO members (list_id, address, display_name, mode, receive_own_posts,"
            " joined_at) SELECT id, 'alice@example.org', 'Alice', 'each', false,"
            " CURRENT_TIMESTAMP FROM lists"))
    engine.dispose()
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    engine = make_engine(config.database_url)
    try:
        assert migrate.current(engine) == migrate.head()
        assert migrate.differences(engine) == []
    finally:
        engine.dispose()
    assert LIST in cli("lists", "list").output
    members = cli("members", "list", LIST, "--json").output
    assert "alice@example.org" in members


def test_a_0002_database_with_a_list_upgrades_and_the_list_keeps_the_default_retry_age(
        cli: Any, config: Config) -> None:
    engine = make_engine(config.database_url)
    migrate.upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO lists (address, title, description, subject_prefix, from_rewrite,"
            " digest_hour, timezone, created_at) VALUES (:a, 'ALS', '', '', 'always', 7, 'UTC',"
            " CURRENT_TIMESTAMP)"), {"a": LIST})
    engine.dispose()
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"database at revision {migrate.head()} (was 0002)"
    assert "max_retry_hours: 120\nmax_retry_hours_default: yes" in \
        cli("lists", "show", LIST).output


def test_a_held_message_keeps_its_envelope_sender_in_a_column_and_its_bytes_as_received(
        cli: Any, config: Config) -> None:
    """Before 0009 a held message carried a made-up Return-Path line in front."""
    engine = make_engine(config.database_url)
    migrate.upgrade(engine, "0008_archive")
    original = b"From: zed@example.org\r\nSubject: Can I ask?\r\n\r\nHello\r\n"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO lists (address, title, description, subject_prefix, from_rewrite,"
            " digest_hour, timezone, created_at) VALUES (:a, 'ALS', '', '', 'always', 7, 'UTC',"
            " CURRENT_TIMESTAMP)"), {"a": LIST})
        conn.execute(text(
            "INSERT INTO held (list_id, message_id, sender, subject, reason, received_at, raw)"
            " SELECT id, 'zed@x', 'zed@example.org', 'Can I ask?', 'not a member',"
            " CURRENT_TIMESTAMP, :raw FROM lists"),
            {"raw": b"Return-Path: <bounce+zed@example.org>\r\n" + original})
    engine.dispose()
    assert cli("db", "upgrade").exit_code == 0
    engine = make_engine(config.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT envelope_sender, raw FROM held")).one()
        assert (row.envelope_sender, bytes(row.raw)) == ("bounce+zed@example.org", original)
    finally:
        engine.dispose()


def test_the_delivery_checks_keep_every_failure_linked_to_its_delivery(
        cli: Any, config: Config) -> None:
    """0010 rebuilds deliveries on SQLite; dropping the old table must not unlink (ON DELETE
    SET NULL) the failures that the report and the outbox listing read."""
    engine = make_engine(config.database_url)
    migrate.upgrade(engine, "0009_held_envelope_sender")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO notices (kind, sender, payload, created_at)"
            " VALUES ('test', 'owner@example.org', :p, CURRENT_TIMESTAMP)"), {"p": b"x"})
        conn.execute(text(
            "INSERT INTO deliveries (notice_id, recipient, status, attempts, next_attempt_at,"
            " created_at) SELECT id, 'bob@example.net', 'deferred', 1, CURRENT_TIMESTAMP,"
            " CURRENT_TIMESTAMP FROM notices"))
        conn.execute(text(
            "INSERT INTO delivery_failures (delivery_id, recipient, kind, reply, at)"
            " SELECT id, 'bob@example.net', 'deferral', '451 try later', CURRENT_TIMESTAMP"
            " FROM deliveries"))
    engine.dispose()
    assert cli("db", "upgrade").exit_code == 0
    engine = make_engine(config.database_url)
    try:
        with engine.connect() as conn:
            linked = conn.execute(text(
                "SELECT d.recipient FROM delivery_failures f"
                " JOIN deliveries d ON d.id = f.delivery_id")).scalars().all()
        assert linked == ["bob@example.net"]
    finally:
        engine.dispose()


def test_an_older_database_is_migrated_when_the_server_opens_it(config: Config) -> None:
    engine = make_engine(config.database_url)
    migrate.upgrade(engine, migrate.BASELINE)
    engine.dispose()
    database = Database(config.database_url)
    try:
        database.create_schema()
        assert migrate.current(database.engine) == migrate.head()
        assert migrate.differences(database.engine) == []
    finally:
        database.dispose()


def test_a_command_on_an_older_database_asks_for_db_upgrade_and_changes_nothing(
        cli: Any, config: Config) -> None:
    engine = make_engine(config.database_url)
    migrate.upgrade(engine, "0002")
    engine.dispose()
    refused = cli("lists", "list")
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: database error: database schema is at revision 0002, this listserv needs "
        f"{migrate.head()}: run `listserv db upgrade`\n")
    engine = make_engine(config.database_url)
    try:
        assert migrate.current(engine) == "0002"
    finally:
        engine.dispose()
    assert cli("db", "upgrade").exit_code == 0
    assert cli("lists", "list").exit_code == 0


def test_the_revision_commands_compare_with_is_alembics_head() -> None:
    assert migrate.head() == migrate.SCHEMA_HEAD


def test_schema_made_by_the_server_is_stamped_so_upgrade_has_nothing_to_do(db: Database) -> None:
    assert migrate.current(db.engine) == migrate.head()
    assert migrate.upgrade(db.engine) == (migrate.head(), migrate.head())


def test_unknown_revision_is_a_one_line_error(cli: Any) -> None:
    result = cli("db", "upgrade", "--revision", "nosuch")
    assert result.exit_code == 1
    assert result.output.startswith("Error: migration error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_the_comparison_notices_a_missing_index(cli: Any, config: Config) -> None:
    assert cli("db", "upgrade").exit_code == 0
    engine = make_engine(config.database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_posts_thread")
        assert [d[0] for d in migrate.differences(engine)] == ["add_index"]
    finally:
        engine.dispose()


def test_processes_starting_together_on_an_empty_database_create_it_once(
    config: Config,
) -> None:
    databases = [Database(config.database_url, 5.0) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: d.create_schema(), databases))
        assert migrate.current(databases[0].engine) == migrate.head()
        assert migrate.differences(databases[0].engine) == []
    finally:
        for d in databases:
            d.dispose()


def test_unreachable_database_is_a_one_line_error(tmp_path: Any) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[database]\nurl = "postgresql+psycopg://nobody@127.0.0.1:1/none"\n')
    result = CliRunner().invoke(main, ["-c", str(path), "db", "upgrade"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: database error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_the_database_keeps_every_delivery_to_one_message_and_a_known_state(
        als: str, post: Any, drain: Any, db: Database) -> None:
    """Whatever code writes deliveries, one with no message, with two, or in a state the
    dispatcher does not know is refused by the database itself."""
    assert post(make_message("alice@example.org", "Hello", "Hi all.",
                             message_id="hello@example.org")).code == 250
    drain()
    with db.session() as s:
        delivery = s.scalars(select(Delivery)).first()
        assert delivery is not None and delivery.post_id is not None
        row = {c: getattr(delivery, c) for c in ("post_id", "member_id", "recipient",
               "attempts", "next_attempt_at", "created_at")}
        notice = Notice(list_id=None, kind="test", sender="owner@example.org",
                        payload=b"Subject: x\r\n\r\nx\r\n", created_at=delivery.created_at)
        s.add(notice)
        s.flush()
        notice_id = notice.id
    with db.session() as s:  # the shape every writer uses is taken
        s.execute(insert(Delivery).values({**row, "post_id": None, "notice_id": notice_id,
                                           "status": "queued"}))
    for change, constraint in (({"post_id": None}, "ck_deliveries_one_source"),
                               ({"notice_id": notice_id}, "ck_deliveries_one_source"),
                               ({"status": "lost"}, "ck_deliveries_status")):
        with pytest.raises(IntegrityError) as refused, db.session() as s:
            s.execute(insert(Delivery).values({**row, "status": "queued", **change}))
        assert constraint in str(refused.value)
