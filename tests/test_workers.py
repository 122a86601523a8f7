"""`serve --workers N`: one process accepts the SMTP connections and deals them in turn to N
receiver processes, restarts one that dies, and stops them all when it stops."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from listserv.config import Config
from listserv.server import Server, utcnow
from listserv.store.database import Database
from listserv.store.models import Post

from .conftest import LIST, Clock, LoopThread, Sink, count, make_message
from .test_hostile import client_from
from .test_serve import free_port, port_open, wait_for

pytestmark = pytest.mark.both_databases


@pytest.fixture
def config_data(config_data: dict[str, Any]) -> dict[str, Any]:
    config_data["receiver"]["workers"] = 2
    config_data["delivery"]["poll_seconds"] = 60.0  # only a wake-up delivers within a test
    return config_data


@pytest.fixture
def workers(config: Config, loop_thread: LoopThread, db: Database) -> Iterator[Server]:
    # The receiver processes keep the real time; so does this one's dispatcher, which must
    # find their posts due.
    server = Server(config, utcnow, roles=("receiver", "dispatcher"))
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


def receiver_pids(server: Server) -> list[int]:
    assert server.acceptor is not None
    return server.acceptor.pids


def post_on(client: smtplib.SMTP, n: int) -> None:
    msg = make_message("alice@example.org", f"Post {n}", "body", message_id=f"w{n}@example.org")
    client.sendmail("alice@example.org", [LIST], msg.as_bytes())


def test_connections_are_dealt_to_the_receiver_processes_in_turn(
    als: str, config_data: dict[str, Any], config_file: Path, db: Database
) -> None:
    port = free_port()
    config_file.write_text(config_file.read_text().replace("port = 0", f"port = {port}", 1))
    server = subprocess.Popen(
        [sys.executable, "-m", "listserv", "-c", str(config_file), "serve", "--role",
         "receiver"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: port_open(port), "the receiver to listen")
        clients = [smtplib.SMTP("127.0.0.1", port, timeout=30) for _ in range(4)]
        for n, client in enumerate(clients):
            post_on(client, n)
        for client in clients:
            client.quit()
    finally:
        server.send_signal(signal.SIGINT)
        log = server.communicate(timeout=60)[0]
    assert server.returncode == 0, log
    assert count(db, Post) == 4
    # Each receiver process logs the posts it stored under its own process id.
    started = re.findall(r"receiver process (\d+) started", log)
    served = Counter(re.findall(r"listserv\.inbound\.smtp\[(\d+)\]: accepted", log))
    assert len(started) == 2 and sorted(served.values()) == [2, 2]
    assert set(served) == set(started) and str(server.pid) not in served
    assert "Traceback" not in log


def test_a_post_stored_by_a_receiver_process_wakes_the_dispatcher(
    als: str, workers: Server, sink: Sink
) -> None:
    with smtplib.SMTP("127.0.0.1", workers.port, timeout=30) as client:
        post_on(client, 1)
    # The dispatcher polls only every 60 s: delivery within the wait means it was woken.
    wait_for(lambda: sink.received, "the post to reach the members", timeout=15)


def test_a_receiver_process_that_dies_is_replaced(als: str, workers: Server,
                                                   db: Database) -> None:
    first, second = receiver_pids(workers)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: first not in receiver_pids(workers), "a new receiver process")
    assert second in receiver_pids(workers) and len(receiver_pids(workers)) == 2
    for n in range(4):  # whichever process each connection goes to, every post is stored
        with smtplib.SMTP("127.0.0.1", workers.port, timeout=30) as client:
            post_on(client, n)
    assert count(db, Post) == 4


def test_one_address_holds_its_share_of_sessions_across_all_receiver_processes(
        two_per_address: None, als: str, workers: Server) -> None:
    """Dealt in turn, a prober's sessions would land on both receivers, each counting only
    its own: two processes used to let it hold twice its share."""
    held = [client_from("127.0.0.2", workers.port) for _ in range(2)]
    try:
        assert all(client.ehlo()[0] == 250 for client in held)
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            client_from("127.0.0.2", workers.port)
        assert refused.value.smtp_code == 421
        with client_from("127.0.0.3", workers.port) as neighbour:
            post_on(neighbour, 1)
    finally:
        for client in held:
            client.close()


def test_stopping_stops_every_receiver_process(
    config: Config, clock: Clock, loop_thread: LoopThread, db: Database
) -> None:
    server = Server(config, clock, roles=("receiver",))
    loop_thread.run(server.start())
    pids = receiver_pids(server)
    loop_thread.run(server.stop())
    assert not port_open(server.port)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_serve_takes_the_number_of_workers_and_refuses_a_bad_one(config_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "listserv", "-c", str(config_file), "serve", "--workers", "0"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--workers" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "listserv", "-c", str(config_file), "serve", "--role",
         "dispatcher", "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: --workers runs receiver processes; --role dispatcher has none"]
