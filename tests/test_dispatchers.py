"""Several dispatcher processes on one database share the outbox: each member gets a post
exactly once, however the work is split between them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, insert, select, text

from listserv.outbound.expansion import EXPAND_BATCH
from listserv.outbound.outbox import CLAIM_AT_LEAST, Outbox
from listserv.store.database import ANALYZE_AFTER, Database, get_list
from listserv.store.models import Delivery, Member

from .conftest import LIST, LoopThread, Sink, make_message
from .test_serve import wait_for

# The claims are database behaviour (SKIP LOCKED on PostgreSQL, the writer lock on SQLite):
# those stories run on both; the dispatcher processes' own stories on SQLite alone.
both_databases = pytest.mark.both_databases

MEMBERS = 10_000


class PeerSink(Sink):
    """The conftest sink, also noting which client connection delivered each message."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: set[tuple[str, int]] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.peers.add(session.peer)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def sink(loop_thread: LoopThread) -> Iterator[PeerSink]:
    s = PeerSink()

    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            lambda: SMTP(s, decode_data=False), "127.0.0.1", 0
        )

    server = loop_thread.run(start())
    s.port = server.sockets[0].getsockname()[1]
    yield s
    server.close()


@pytest.fixture
def config_data(config_data: dict[str, Any]) -> dict[str, Any]:
    """Small claims and two connections per process, so the processes interleave."""
    config_data["delivery"].update(batch_size=50, connections=2, poll_seconds=0.2)
    return config_data


def add_members(db: Database, count: int) -> None:
    with db.session() as s:
        ml = get_list(s, LIST)
        assert ml is not None
        now = ml.created_at
        s.execute(insert(Member), [
            {"list_id": ml.id, "address": f"m{i:05d}@example.net", "display_name": "",
             "mode": "each", "receive_own_posts": False, "joined_at": now}
            for i in range(count)
        ])


def dispatcher(config_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "listserv", "-c", str(config_file), "serve", "--role",
         "dispatcher"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@both_databases
@pytest.mark.slow
def test_two_dispatchers_deliver_to_10000_members_exactly_once(
    als: str, db: Database, post: Any, sink: PeerSink, config_file: Path
) -> None:
    add_members(db, MEMBERS)
    reply = post(make_message("alice@example.org", "To everyone", "Hello all.",
                              message_id="big@example.org"))
    assert reply.code == 250
    expected = MEMBERS + 2  # Bob and Dave from the seed list; Alice is the author
    workers = [dispatcher(config_file), dispatcher(config_file)]
    try:
        deadline = time.monotonic() + 120  # bounds a failure only
        while len(sink.recipients()) < expected and time.monotonic() < deadline:
            assert all(w.poll() is None for w in workers), "a dispatcher exited"
            time.sleep(0.1)
    finally:
        for w in workers:
            w.send_signal(signal.SIGINT)
        logs = [w.communicate(timeout=30)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    counts = Counter(sink.recipients())
    assert len(counts) == expected
    assert set(counts.values()) == {1}
    assert "alice@example.org" not in counts
    # Each process opens at most two connections: more peers means both delivered.
    assert len(sink.peers) > 2


@both_databases
def test_a_big_fan_out_gives_postgresql_fresh_statistics_at_once(
    als: str, db: Database, post: Any, outbox: Outbox
) -> None:
    # A first big fan-out on a new database: PostgreSQL kept the plan of the claim query it
    # made while deliveries was empty, and one claim of 20,000 rows took 40 s.
    if db.engine.dialect.name != "postgresql":
        pytest.skip("table statistics for the planner are PostgreSQL's")
    with db.session() as s:
        ml = get_list(s, LIST)
        assert ml is not None
        s.execute(insert(Member), [
            {"list_id": ml.id, "address": f"m{i}@example.net", "joined_at": ml.created_at}
            for i in range(ANALYZE_AFTER)])
    for _ in range(12):  # the outbox polls an empty table: the claim gets a cached plan
        assert outbox.claim(500) == []
    assert post(make_message("alice@example.org", "To everyone", "hello")).code == 250
    while outbox.expand_batch():
        pass
    with db.session() as s:
        analyzed = s.execute(text(
            "SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass")).scalar_one()
    assert analyzed >= ANALYZE_AFTER  # -1 until analyzed


@both_databases
def test_the_first_copies_of_a_big_post_go_out_before_its_fan_out_is_expanded(
    als: str, db: Database, post: Any, sink: PeerSink, outbox: Outbox, loop_thread: LoopThread
) -> None:
    add_members(db, EXPAND_BATCH + 500)
    assert post(make_message("alice@example.org", "To everyone", "Hello all.")).code == 250
    stop = asyncio.Event()
    queued_at_first_copy: list[int] = []
    deliver = sink.handle_DATA

    async def first_copy(server: SMTP, session: Session, envelope: Envelope) -> str:
        if not queued_at_first_copy:
            with db.read() as s:  # never waits for the dispatcher's writes
                queued_at_first_copy.append(s.scalar(select(func.count(Delivery.id))) or 0)
            stop.set()  # the dispatcher ends after this round
        return await deliver(server, session, envelope)

    sink.handle_DATA = first_copy  # type: ignore[method-assign]
    loop_thread.run(outbox.run_once(stop))
    assert sink.recipients(), "no copy went out"
    # One batch was expanded when the first copy left; the rest of the list was not yet.
    assert queued_at_first_copy[0] <= EXPAND_BATCH


def serve_dispatchers(config_file: Path, log: Path, count: int) -> subprocess.Popen[str]:
    """`serve --role dispatcher --dispatchers N`, its log (every process's) in a file."""
    return subprocess.Popen(
        [sys.executable, "-m", "listserv", "-c", str(config_file), "serve", "--role",
         "dispatcher", "--dispatchers", str(count)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def dispatcher_pids(log: Path) -> list[int]:
    return [int(pid) for pid in re.findall(r"dispatcher process (\d+) started", log.read_text())]


def stop(server: subprocess.Popen[str], log: Path) -> str:
    server.send_signal(signal.SIGINT)
    server.wait(timeout=60)
    return log.read_text()


def test_one_serve_with_two_dispatcher_processes_delivers_every_copy_once(
    als: str, db: Database, post: Any, sink: PeerSink, config_file: Path, tmp_path: Path
) -> None:
    add_members(db, 200)
    for n in range(3):
        assert post(make_message("alice@example.org", f"Post {n}", "Hello all.",
                                 message_id=f"p{n}@example.org")).code == 250
    expected = 3 * (200 + 2)  # Bob and Dave from the seed list; Alice is the author
    log = tmp_path / "serve.log"
    server = serve_dispatchers(config_file, log, 2)
    try:
        wait_for(lambda: len(sink.recipients()) >= expected, "every copy", timeout=120)
    finally:
        output = stop(server, log)
    assert server.returncode == 0, output
    copies = Counter((r.message["Message-ID"], rcpt) for r in sink.received
                     for rcpt in r.rcpt_tos)
    assert len(copies) == expected and set(copies.values()) == {1}
    # Two processes of their own delivered, and both stopped with the serving process.
    children = dispatcher_pids(log)
    delivering = set(re.findall(r"\[(\d+)\]: delivering by smtp$", output, re.M))
    assert len(children) == 2 and delivering == {str(pid) for pid in children}
    assert str(server.pid) not in delivering
    assert "Traceback" not in output and "did not stop" not in output


def test_kill9_of_one_dispatcher_process_loses_nobody(
    als: str, db: Database, post: Any, sink: PeerSink, config_file: Path, tmp_path: Path
) -> None:
    members = 600
    add_members(db, members)
    sink.data_delay = 0.01  # a relay's pace, so the kill falls mid fan-out
    assert post(make_message("alice@example.org", "To everyone", "Hello all.")).code == 250
    log = tmp_path / "serve.log"
    server = serve_dispatchers(config_file, log, 2)  # the shipped lease: 300 s

    def holders() -> dict[int, int]:
        """Unsent deliveries leased, by the process id of their dispatcher."""
        with db.read() as s:
            owners = s.scalars(select(Delivery.lease_owner).where(
                Delivery.status != "sent", Delivery.lease_owner.is_not(None))).all()
        return Counter(int(owner.split(":")[1]) for owner in owners)

    try:
        wait_for(lambda: len(sink.recipients()) >= 50 and holders(), "the fan-out under way")
        victim, held = holders().most_common(1)[0]
        assert victim in dispatcher_pids(log)
        os.kill(victim, signal.SIGKILL)
        before = len(sink.recipients())
        assert before < members + 2, "the fan-out finished before the kill"
        # Another process starts in its place and takes back the dead one's leases at once,
        # long before they run out.
        wait_for(lambda: set(sink.recipients()) >= {f"m{i:05d}@example.net"
                                                    for i in range(members)},
                 "every member's copy", timeout=60)
    finally:
        output = stop(server, log)
    assert server.returncode == 0, output
    assert f"dispatcher process {victim} exited with -9" in output, output
    assert "reclaimed" in output
    counts = Counter(sink.recipients())
    assert len(counts) == members + 2
    # Copies the killed process sent but never recorded go again: at most its one round.
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= max(50 * 2, CLAIM_AT_LEAST)
    print(f"\nkill -9 of a dispatcher holding {held} leases after {before} copies; "
          f"duplicates: {duplicates}")


def test_dispatchers_are_refused_for_a_role_without_a_dispatcher(config_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "listserv", "-c", str(config_file), "serve", "--role",
         "receiver", "--dispatchers", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --dispatchers runs dispatcher processes; --role receiver has none")
