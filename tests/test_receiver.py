"""What the receiver answers: precise SMTP codes, never a lost or half-stored message."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from sqlalchemy import select

from listserv.config import Config
from listserv.core.replies import Outcome
from listserv.inbound import dispatch
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import FanoutJob, Post, Thread

from .conftest import LIST, count, make_message
from .pg import write_locked


def test_unknown_list_is_refused_at_rcpt(als: str, post: Any) -> None:
    reply = post(make_message("alice@example.org", "x", "x"), to=["nosuch@lists.example.org"])
    assert reply.data is None
    assert reply.rcpt[0][0] == 550
    assert reply.rcpt[0][1].startswith("5.1.1")


def test_foreign_domain_is_refused_we_are_no_relay(als: str, post: Any) -> None:
    reply = post(make_message("alice@example.org", "x", "x"), to=["someone@gmail.com"])
    assert reply.rcpt == [(550, "5.7.1 Relaying denied: we only receive mail for our lists")]


def test_list_domain_is_case_insensitive(als: str, post: Any, db: Database) -> None:
    reply = post(make_message("alice@EXAMPLE.org", "x", "x", message_id="c@x.org"),
                 to=["Living-With-ALS@Lists.Example.ORG"])
    assert reply.code == 250
    with db.session() as s:
        assert s.scalar(select(Post.author_address)) == "alice@example.org"


@pytest.fixture
def small_limit(config_data: dict[str, Any]) -> None:
    config_data["receiver"]["max_message_bytes"] = 2000


def test_oversized_message_is_refused_with_552(small_limit: None, als: str, post: Any,
                                               db: Database) -> None:
    reply = post(make_message("alice@example.org", "big", "x" * 5000, message_id="b@x.org"))
    assert (reply.code, reply.text[:5]) == (552, "5.3.4")
    assert count(db, Post) == 0


def test_size_declared_at_mail_from_is_refused_early(small_limit: None, als: str,
                                                     receiver: Server) -> None:
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        code, text = client.mail("alice@example.org", ["SIZE=999999"])
    assert (code, text[:5]) == (552, b"5.3.4")


@pytest.fixture
def two_recipients(config_data: dict[str, Any]) -> None:
    config_data["receiver"]["max_recipients"] = 2


def test_too_many_recipients_get_452(two_recipients: None, als: str, post: Any) -> None:
    reply = post(make_message("alice@example.org", "x", "x", message_id="m@x.org"),
                 to=[LIST, LIST, LIST])
    assert [code for code, _ in reply.rcpt] == [250, 250, 452]
    assert reply.rcpt[2][1].startswith("4.5.3")
    assert reply.code == 250


def test_message_without_from_is_refused(als: str, post: Any, db: Database) -> None:
    raw = b"To: " + LIST.encode() + b"\r\nSubject: who?\r\nMessage-ID: <n@x>\r\n\r\nhi\r\n"
    reply = post(raw, sender="alice@example.org")
    assert (reply.code, reply.text[:5]) == (550, "5.6.0")
    assert count(db, Post) == 0


def test_crafted_mime_nesting_is_refused_quickly(als: str, post: Any, db: Database) -> None:
    depth = 300
    head = b"From: alice@example.org\r\nTo: " + LIST.encode() + b"\r\nSubject: deep\r\n"
    body = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    reply = post(head + body + b"\r\nhi\r\n", sender="alice@example.org")
    assert (reply.code, reply.text[:5]) == (554, "5.6.0")
    assert count(db, Post) == 0


def test_database_failure_during_data_answers_451_and_stores_nothing(
    als: str, receiver: Server, config: Config, db: Database
) -> None:
    msg = make_message("alice@example.org", "Locked", "body", message_id="lock@x.org")
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        assert client.mail("alice@example.org")[0] == 250
        assert client.rcpt(LIST)[0] == 250
        # Another process holds the write lock while the message arrives.
        with write_locked(config.database_url):
            code, text = client.data(msg.as_bytes())
    assert (code, text[:5]) == (451, b"4.3.0")
    assert count(db, Post) == 0
    assert count(db, Thread) == 0
    assert count(db, FanoutJob) == 0
    # The client retries later, as SMTP clients do: stored once, and the server still serves.
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        assert client.sendmail("alice@example.org", [LIST], msg.as_bytes()) == {}
    assert count(db, Post) == 1


def test_missing_table_is_a_database_error_451_nothing_half_stored(
    als: str, receiver: Server, db: Database
) -> None:
    with db.session() as s:
        s.connection().exec_driver_sql("DROP TABLE fanout_jobs")
    msg = make_message("alice@example.org", "Broken", "body", message_id="e@x.org")
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        client.mail("alice@example.org")
        client.rcpt(LIST)
        code, text = client.data(msg.as_bytes())
    assert (code, text[:5]) == (451, b"4.3.0")
    assert count(db, Post) == 0


def test_a_bug_while_storing_keeps_an_emergency_copy_and_answers_451(
    als: str, receiver: Server, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*args: Any) -> Outcome:
        raise RuntimeError("a bug in ingest")

    # Fault injection: the storage layer raises something nobody planned for.
    monkeypatch.setitem(dispatch.HANDLERS, "posts", bug)
    msg = make_message("alice@example.org", "Keep me", "precious words", message_id="k@x.org")
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        client.mail("alice@example.org")
        client.rcpt(LIST)
        code, text = client.data(msg.as_bytes())
    assert (code, text[:5]) == (451, b"4.3.0")
    (saved,) = (config.base_dir / "var" / "emergency" / "new").iterdir()
    assert b"precious words" in saved.read_bytes()


def test_database_down_at_rcpt_answers_451_not_500(
    als: str, receiver: Server, db: Database
) -> None:
    with db.session() as s:
        cascade = " CASCADE" if db.engine.dialect.name == "postgresql" else ""
        s.connection().exec_driver_sql("DROP TABLE lists" + cascade)
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        client.mail("alice@example.org")
        code, text = client.rcpt(LIST)
    assert (code, text[:5]) == (451, b"4.3.0")
    assert b"Error" not in text
