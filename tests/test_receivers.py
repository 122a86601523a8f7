"""Receivers are stateless: several can listen on one port and all store into one database."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from listserv.config import Config, parse
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Post

from .conftest import LIST, Clock, LoopThread, count, make_message, smtp_send
from .test_serve import free_port

pytestmark = pytest.mark.both_databases


@pytest.fixture
def config_data(config_data: dict[str, Any]) -> dict[str, Any]:
    config_data["receiver"].update(port=free_port(), reuse_port=True)
    return config_data


def test_two_receivers_share_one_port_and_one_database(
    als: str, config_data: dict[str, Any], tmp_path: Any, clock: Clock,
    loop_thread: LoopThread, db: Database,
) -> None:
    config = parse(config_data, tmp_path)
    servers = [Server(config, clock, roles=("receiver",)) for _ in range(2)]
    for server in servers:
        loop_thread.run(server.start())
    try:
        assert servers[0].port == servers[1].port == config.receiver.port
        for i in range(6):
            msg = make_message("alice@example.org", f"Post {i}", "body",
                               message_id=f"p{i}@example.org")
            assert smtp_send(config.receiver.port, "alice@example.org", [LIST],
                             msg.as_bytes()).code == 250
    finally:
        for server in servers:
            loop_thread.run(server.stop())
    assert count(db, Post) == 6


def test_without_reuse_port_a_second_receiver_cannot_take_the_port(
    config_data: dict[str, Any], tmp_path: Any, clock: Clock, loop_thread: LoopThread,
    db: Database,
) -> None:
    config_data["receiver"]["reuse_port"] = False
    config = parse(config_data, tmp_path)
    first = Server(config, clock, roles=("receiver",))
    loop_thread.run(first.start())
    second = Server(config, clock, roles=("receiver",))
    try:
        with pytest.raises(OSError):
            loop_thread.run(second.start())
    finally:
        loop_thread.run(first.stop())
        second.db.dispose()


def test_a_writer_in_another_process_makes_a_post_wait_not_fail(
    sqlite_only: None, als: str, receiver: Server, config: Config, db: Database
) -> None:
    # Another listserv process (a second receiver, the dispatcher, the CLI) is writing, for
    # longer than busy_timeout: the post queues behind it on the writer lock and is stored,
    # where SQLite's own busy handler would have given up with a 451.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITER, config.database_url,
         str(config.database.busy_timeout * 2)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "writing\n"
        msg = make_message("alice@example.org", "Patient", "body", message_id="w@x.org")
        assert smtp_send(receiver.port, "alice@example.org", [LIST], msg.as_bytes()).code == 250
    finally:
        assert holder.wait(timeout=30) == 0
    assert count(db, Post) == 1


HOLD_THE_WRITER = """
import sys, time
from listserv.store.database import Database
db = Database(sys.argv[1])
with db.session() as session:
    session.connection()  # BEGIN IMMEDIATE: SQLite's write lock is taken
    print("writing", flush=True)
    time.sleep(float(sys.argv[2]))
"""
