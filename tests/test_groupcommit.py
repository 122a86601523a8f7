"""Group commit: posts that arrive together share one transaction, and each client is
answered only for the transaction that holds its post."""

from __future__ import annotations

import logging
import re
import smtplib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import event, select

from listserv.app import App
from listserv.config import Config
from listserv.core.addresses import Route, route
from listserv.core.replies import Outcome
from listserv.inbound import groupcommit, posts
from listserv.inbound.incoming import Incoming
from listserv.inbound.smtp import Handler
from listserv.server import Server
from listserv.store.database import Database, WriterLock, sqlite_path
from listserv.store.models import Delivery, FanoutJob, Held, Post, Thread

from .conftest import LIST, count, make_message
from .pg import write_locked
from .test_hostile import wait_until

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def patient_writer(config_data: dict[str, Any]) -> None:
    """The first writer waits for the peer's lock as long as the test needs to queue the
    others behind it (the default second would make it give up on a busy machine)."""
    config_data["database"]["busy_timeout"] = 30.0


@pytest.fixture
def door(db: Database, config: Config) -> Handler:
    """What the receiver holds (its group-commit writer among it), at a fixed time."""
    app = App(config, lambda: NOW)
    app.db = db
    return Handler(app)


def started(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def queued(door: Handler, msg: EmailMessage, sender: str, routes: list[Route]) -> Outcome:
    """Queue a post for the writer, as the receiver does at DATA; its outcome once its
    group committed."""
    incoming = Incoming(msg.as_bytes(), sender, (LIST,), door.config.limits)
    return door.committer.submit(posts.job(door, incoming, routes)).result().outcome


def test_a_reply_queued_with_its_parent_is_threaded_and_each_post_stored_once(
    patient_writer: None, als: str, db: Database, config: Config, door: Handler
) -> None:
    committer = door.committer
    routes = [route(LIST, {"lists.example.org"}, {LIST})]
    results: dict[str, Outcome | BaseException] = {}

    def send(name: str, msg: EmailMessage) -> Callable[[], None]:
        def run() -> None:
            try:
                results[name] = queued(door, msg, "alice@example.org", routes)
            except Exception as exc:
                results[name] = exc
        return run

    first = make_message("alice@example.org", "First", "x", message_id="first@x.org")
    parent = make_message("alice@example.org", "Walkers", "which one?", message_id="p@x.org")
    reply = make_message("alice@example.org", "Re: Walkers", "this one", message_id="r@x.org",
                         in_reply_to="p@x.org")
    workers = []
    # A peer holds the write lock: the first post is being written (and waits), so the
    # parent, its reply and a retried copy of the parent queue up behind it as one group.
    with write_locked(config.database_url):
        workers.append(started(send("first", first)))
        assert wait_until(lambda: committer.writing and not committer.queued, timeout=30)
        for n, (name, msg) in enumerate([("parent", parent), ("reply", reply),
                                         ("copy", parent)], start=1):
            workers.append(started(send(name, msg)))
            assert wait_until(lambda n=n: committer.queued == n, timeout=30)
    for worker in workers:
        worker.join()
    assert results == {"first": Outcome.ACCEPTED, "parent": Outcome.ACCEPTED,
                       "reply": Outcome.ACCEPTED, "copy": Outcome.DUPLICATE}
    with db.session() as s:
        stored = {p.message_id: p for p in s.scalars(select(Post))}
        assert sorted(stored) == ["first@x.org", "p@x.org", "r@x.org"]
        assert stored["r@x.org"].parent_id == stored["p@x.org"].id
        assert stored["r@x.org"].thread_id == stored["p@x.org"].thread_id
        thread = s.get_one(Thread, stored["p@x.org"].thread_id)
        assert thread.post_count == 2
    assert count(db, Thread) == 2
    assert count(db, FanoutJob) == 3


def test_posts_arriving_while_the_writer_waits_for_its_turn_join_its_transaction(
    patient_writer: None, als: str, db: Database, config: Config, door: Handler
) -> None:
    if not config.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL writers take no turns: there is no writer lock to wait for")
    committer = door.committer
    routes = [route(LIST, {"lists.example.org"}, {LIST})]
    commits: list[object] = []
    event.listen(db.engine, "commit", commits.append)
    results: dict[str, Outcome] = {}

    def send(name: str) -> Callable[[], None]:
        msg = make_message("alice@example.org", name, "x", message_id=f"{name}@x.org")
        return lambda: results.update({name: queued(door, msg, "alice@example.org", routes)})

    workers = []
    # Another receiver process has its turn at writing: the first post waits for it, and
    # the two that arrive meanwhile go into the same transaction, behind the same fsync.
    with WriterLock(sqlite_path(config.database_url)):
        workers.append(started(send("first")))
        assert wait_until(lambda: committer.writing and not committer.queued, timeout=30)
        for n, name in enumerate(["second", "third"], start=1):
            workers.append(started(send(name)))
            assert wait_until(lambda n=n: committer.queued == n, timeout=30)
    for worker in workers:
        worker.join()
    assert results == dict.fromkeys(["first", "second", "third"], Outcome.ACCEPTED)
    assert len(commits) == 1
    assert count(db, Post) == 3


def test_a_bug_met_by_one_post_of_a_group_leaves_the_others_stored(
    als: str, cli: Any, db: Database, config: Config, door: Handler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli("lists", "set", LIST, "--moderator", "mo@example.org").exit_code == 0
    routes = [route(LIST, {"lists.example.org"}, {LIST})]
    good = make_message("alice@example.org", "Fine", "x", message_id="good@x.org")
    bad = make_message("alice@example.org", "Trips a bug", "x", message_id="bad@x.org")
    question = make_message("zed@example.org", "Can I ask?", "not a member yet",
                            message_id="zed@x.org")
    store = posts.store_post

    def buggy(conn: Any, ml: Any, parsed: Any, *args: Any) -> int:
        post = store(conn, ml, parsed, *args)
        if parsed.message_id == "bad@x.org":
            raise RuntimeError("a bug after the post was flushed")
        return post

    # Fault injection: the post is written inside its savepoint, then the bug strikes.
    monkeypatch.setattr(posts, "store_post", buggy)
    jobs = [posts.job(door, Incoming(m.as_bytes(), str(m["From"]), (LIST,)), routes)
            for m in (bad, good, question)]
    bad_answer, good_answer, held_answer = groupcommit.commit(db, jobs)
    assert isinstance(bad_answer.exception(), RuntimeError)
    assert good_answer.result().outcome is Outcome.ACCEPTED
    assert held_answer.result().outcome is Outcome.HELD
    with db.session() as s:
        assert list(s.scalars(select(Post.message_id))) == ["good@x.org"]
    assert count(db, Thread) == count(db, FanoutJob) == 1
    # The held question and the notices it causes were written in its own savepoint.
    assert count(db, Held) == 1
    assert count(db, Delivery, Delivery.recipient == "mo@example.org") == 1


def test_database_failure_during_a_grouped_commit_answers_451_to_every_client(
    als: str, receiver: Server, config: Config, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clients = []
    for _ in range(4):
        client = smtplib.SMTP("127.0.0.1", receiver.port, timeout=30)
        client.ehlo()
        assert client.mail("alice@example.org")[0] == 250
        assert client.rcpt(LIST)[0] == 250
        clients.append(client)
    replies: list[tuple[int, bytes]] = []

    def data(client: smtplib.SMTP, n: int) -> Callable[[], None]:
        msg = make_message("alice@example.org", f"Post {n}", "x", message_id=f"{n}@x.org")
        return lambda: replies.append(client.data(msg.as_bytes()))

    caplog.set_level(logging.ERROR, "listserv.inbound.groupcommit")
    # A peer holds the write lock for longer than the busy timeout: the first post waits
    # for it alone, the others arrive meanwhile and fail together, as one group.
    with write_locked(config.database_url):
        workers = [started(data(client, n)) for n, client in enumerate(clients)]
        for worker in workers:
            worker.join()
    for client in clients:
        client.quit()
    assert [(code, text[:5]) for code, text in replies] == [(451, b"4.3.0")] * 4
    groups = [int(m[1]) for r in caplog.records
              if (m := re.match(r"group commit of (\d+) messages failed", r.getMessage()))]
    assert groups and max(groups) >= 2
    assert count(db, Post) == count(db, Thread) == count(db, FanoutJob) == 0


def test_eight_concurrent_clients_each_get_their_post_stored_once(
    als: str, receiver: Server, db: Database, post: Any
) -> None:
    replies: list[int] = []

    def send(n: int) -> Callable[[], None]:
        # Two clients send each message, as a client retrying on another connection does.
        msg = make_message("alice@example.org", f"Post {n // 2}", "x",
                           message_id=f"{n // 2}@x.org")
        return lambda: replies.append(post(msg).code)

    for worker in [started(send(n)) for n in range(8)]:
        worker.join()
    assert replies == [250] * 8
    with db.session() as s:
        assert sorted(s.scalars(select(Post.message_id))) == [f"{n}@x.org" for n in range(4)]
    assert count(db, Thread) == count(db, FanoutJob) == 4


def test_two_copies_of_a_held_post_in_one_group_are_held_once(
    patient_writer: None, als: str, db: Database, config: Config, door: Handler
) -> None:
    committer = door.committer
    routes = [route(LIST, {"lists.example.org"}, {LIST})]
    first = make_message("alice@example.org", "First", "x", message_id="first@x.org")
    question = make_message("zed@example.org", "Can I ask?", "not a member yet",
                            message_id="zed@x.org")
    outcomes: dict[str, list[Outcome]] = {"alice": [], "zed": []}

    def send(who: str, msg: EmailMessage) -> Callable[[], None]:
        def run() -> None:
            outcomes[who].append(queued(door, msg, f"{who}@example.org", routes))
        return run

    # A member's post is being written (and waits for a peer); meanwhile a non-member's
    # question arrives twice (a retry on a second connection): both copies are decided
    # in the next transaction, together.
    with write_locked(config.database_url):
        workers = [started(send("alice", first))]
        assert wait_until(lambda: committer.writing and not committer.queued, timeout=30)
        for n in (1, 2):
            workers.append(started(send("zed", question)))
            assert wait_until(lambda n=n: committer.queued == n, timeout=30)
    for worker in workers:
        worker.join()
    assert outcomes["alice"] == [Outcome.ACCEPTED]
    assert sorted(o.value for o in outcomes["zed"]) == sorted(
        [Outcome.HELD.value, Outcome.DUPLICATE.value])
    assert count(db, Held) == 1
