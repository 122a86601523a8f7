"""Fault injection on real processes: kill -9 of the dispatcher mid fan-out and of the
receiver mid DATA, and a clean SIGTERM, each followed by a restart that loses nothing."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from listserv.outbound.outbox import CLAIM_AT_LEAST
from listserv.store.database import Database
from listserv.store.models import Delivery, Post

from .conftest import LIST, Sink, count, make_message, smtp_send
from .test_serve import free_port, port_open, wait_for

MEMBERS = 2000
pytestmark = [pytest.mark.slow, pytest.mark.both_databases]


@pytest.fixture
def fast_faults(config_data: dict[str, Any]) -> None:
    """Small timeouts so a killed worker's leases come back quickly."""
    config_data["receiver"]["port"] = free_port()
    config_data["delivery"].update(lease_seconds=1.0, poll_seconds=0.2, connections=4,
                                   batch_size=100)


@pytest.fixture
def default_lease(fast_faults: None, config_data: dict[str, Any]) -> float:
    """The shipped lease (300 s): a restart must not wait for it."""
    del config_data["delivery"]["lease_seconds"]
    return 300.0


class Process:
    """`python -m listserv -c CONFIG serve --role ROLE` as a real child process."""

    def __init__(self, config_file: Path, role: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "listserv", "-c", str(config_file), "serve", "--role", role],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> tuple[int, str, float]:
        """SIGTERM; (exit code, output, seconds until it exited)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        output, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, output, time.monotonic() - start


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.kill9()


def big_list(cli: Any, tmp_path: Path) -> list[str]:
    assert cli("lists", "create", "living-with-als", "--title", "Living with ALS").exit_code == 0
    addresses = [f"member{i:04d}@example.org" for i in range(MEMBERS)]
    csv = tmp_path / "members.csv"
    csv.write_text("".join(f"{a},,each\n" for a in addresses))
    result = cli("members", "import", LIST, str(csv))
    assert result.exit_code == 0, result.output
    return addresses


def copies(sink: Sink) -> collections.Counter[str]:
    return collections.Counter(sink.recipients())


def test_kill9_of_dispatcher_mid_fanout_loses_nobody_and_the_restart_resumes_at_once(
        default_lease: float, config_file: Path, cli: Any, tmp_path: Path, receiver: Any,
        sink: Sink, db: Database, processes: list[Process]) -> None:
    addresses = big_list(cli, tmp_path)
    assert cli("members", "add", LIST, "alice@example.org").exit_code == 0
    question = make_message("alice@example.org", "To all", "hello everyone", message_id="f@x")
    assert smtp_send(receiver.port, "alice@example.org", [LIST], question.as_bytes()).code == 250
    first = Process(config_file, "dispatcher")
    processes.append(first)
    wait_for(lambda: len(sink.received) >= 1000, "half of the fan-out", timeout=60)
    first.kill9()
    before = len(sink.received)
    assert before < MEMBERS, "the fan-out finished before the kill; the test proves nothing"

    second = Process(config_file, "dispatcher")
    processes.append(second)
    def all_sent() -> bool:
        # A plain reader: it never takes the lock the dispatcher writes with.
        with db.read() as s:
            sent = s.scalar(select(func.count()).select_from(Delivery)
                            .where(Delivery.status == "sent"))
            return sent == MEMBERS

    # The restart reclaims the leases of the dispatcher it replaces (its process is gone):
    # the rest goes out now, not after the lease. Copies the killed one sent but never
    # recorded are sent again.
    restarted = time.monotonic()
    wait_for(all_sent, "every delivery recorded as sent", timeout=default_lease / 5)
    resumed_in = time.monotonic() - restarted
    code, output, _ = second.terminate()
    assert code == 0, output
    counts = copies(sink)
    assert set(counts) == set(addresses)
    duplicates = sum(n - 1 for n in counts.values())
    # What one worker has claimed at a time: one round.
    in_flight = max(100 * 4, CLAIM_AT_LEAST)
    print(f"\nkill -9 after {before} of {MEMBERS} copies; all sent {resumed_in:.1f} s after "
          f"the restart (lease {default_lease:.0f} s); duplicates: {duplicates} "
          f"(bound {in_flight})")
    assert duplicates <= in_flight


def test_sigterm_stops_within_seconds_and_releases_claimed_deliveries(
        fast_faults: None, config_file: Path, cli: Any, tmp_path: Path, receiver: Any,
        sink: Sink, db: Database, processes: list[Process]) -> None:
    big_list(cli, tmp_path)
    assert cli("members", "add", LIST, "alice@example.org").exit_code == 0
    msg = make_message("alice@example.org", "To all", "hello", message_id="t@x")
    assert smtp_send(receiver.port, "alice@example.org", [LIST], msg.as_bytes()).code == 250
    server = Process(config_file, "dispatcher")
    processes.append(server)
    wait_for(lambda: len(sink.received) >= 100, "the fan-out to start", timeout=60)
    code, output, seconds = server.terminate()
    assert code == 0, output
    assert seconds < 5
    assert "Traceback" not in output
    assert count(db, Delivery, Delivery.status != "sent", Delivery.lease_owner.is_not(None)) == 0


def test_kill9_of_receiver_mid_data_stores_nothing_and_the_retry_once(
        fast_faults: None, config_data: dict[str, Any], config_file: Path, cli: Any,
        db: Database, processes: list[Process]) -> None:
    port = config_data["receiver"]["port"]
    assert cli("lists", "create", "living-with-als", "--title", "Living with ALS").exit_code == 0
    assert cli("members", "add", LIST, "alice@example.org").exit_code == 0
    first = Process(config_file, "receiver")
    processes.append(first)
    wait_for(lambda: port_open(port), "the receiver to listen")
    msg = make_message("alice@example.org", "Half", "line\n" * 5000, message_id="half@x")
    raw = msg.as_bytes()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def command(line: bytes) -> bytes:
            sock.sendall(line + b"\r\n")
            return reader.readline()

        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO client.example.net\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        assert command(b"MAIL FROM:<alice@example.org>").startswith(b"250")
        assert command(b"RCPT TO:<" + LIST.encode() + b">").startswith(b"250")
        assert command(b"DATA").startswith(b"354")
        sock.sendall(raw[: len(raw) // 2])
        first.kill9()
        try:
            answer = reader.readline()
        except OSError:
            answer = b""
    assert not answer.startswith(b"250")
    assert count(db, Post) == 0

    second = Process(config_file, "receiver")
    processes.append(second)
    wait_for(lambda: port_open(port), "the restarted receiver")
    assert smtp_send(port, "alice@example.org", [LIST], raw).code == 250
    assert smtp_send(port, "alice@example.org", [LIST], raw).code == 250  # a second retry
    assert count(db, Post) == 1
    code, output, seconds = second.terminate()
    assert code == 0, output
    assert seconds < 5
