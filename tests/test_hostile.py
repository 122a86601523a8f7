"""Hostile and broken input: the receiver never crashes, never stalls other sessions, never
stores half a message, and answers every case with a precise code."""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import event, select

from listserv.inbound.gate import SessionGate
from listserv.inbound.smtp import Handler, ListservSMTP
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Post

from .conftest import LIST, Sink, count, make_message, smtp_send


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll the server's visible state; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def few_sessions(config_data: dict[str, Any]) -> None:
    config_data["receiver"].update(max_sessions=20, timeout=30.0)


def test_a_thousand_idle_connections_cannot_keep_a_post_out(
        few_sessions: None, als: str, receiver: Server, db: Database) -> None:
    idle = []
    try:
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", receiver.port))
            idle.append(sock)
        assert wait_until(lambda: len(receiver.gate) <= 20)
        start = time.monotonic()
        reply = smtp_send(receiver.port, "alice@example.org", [LIST],
                          make_message("alice@example.org", "Hi", "x", message_id="i@x")
                          .as_bytes())
        elapsed = time.monotonic() - start
    finally:
        for sock in idle:
            sock.close()
    assert reply.code == 250
    assert elapsed < 10.0  # well inside the 30 s idle timeout: an idle session made room
    assert count(db, Post) == 1
    assert wait_until(lambda: len(receiver.gate) == 0)  # nothing kept for closed sessions


@pytest.fixture
def three_sessions(config_data: dict[str, Any]) -> None:
    config_data["receiver"]["max_sessions"] = 3


def test_sessions_beyond_the_cap_in_transactions_get_421(three_sessions: None, als: str,
                                                         receiver: Server) -> None:
    busy = []
    try:
        for _ in range(3):
            client = smtplib.SMTP("127.0.0.1", receiver.port)
            client.ehlo()
            assert client.mail("alice@example.org")[0] == 250  # an open transaction
            busy.append(client)
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", receiver.port)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0")
    finally:
        for client in busy:
            client.close()


@pytest.fixture
def short_timeout(config_data: dict[str, Any]) -> None:
    config_data["receiver"]["timeout"] = 0.5


def test_a_silent_client_is_disconnected(short_timeout: None, als: str,
                                         receiver: Server) -> None:
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.settimeout(5)
        assert sock.recv(1000).startswith(b"220")
        start = time.monotonic()
        assert sock.recv(1000) == b""  # closed by the server
        assert time.monotonic() - start < 3
    assert wait_until(lambda: len(receiver.gate) == 0)


def test_a_trickling_client_is_disconnected(short_timeout: None, als: str,
                                            receiver: Server) -> None:
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.settimeout(5)
        assert sock.recv(1000).startswith(b"220")
        start = time.monotonic()
        closed = False
        while not closed and time.monotonic() - start < 5:
            try:
                sock.sendall(b"E")  # one byte of a command that never ends
                sock.settimeout(0.1)
                closed = sock.recv(1000) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed
        assert time.monotonic() - start < 3
    assert wait_until(lambda: len(receiver.gate) == 0)


def test_undeclared_8bit_data_is_refused(als: str, receiver: Server, db: Database) -> None:
    msg = make_message("alice@example.org", "Café", "Crème brûlée", message_id="8@x")
    raw = msg.as_bytes().replace(b"=C3=A8", "è".encode()).replace(
        b"Content-Transfer-Encoding: quoted-printable", b"Content-Transfer-Encoding: 8bit")
    raw = raw.replace(b"=C3=BB", "û".encode())
    assert not raw.isascii()
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        client.mail("alice@example.org")  # no BODY=8BITMIME
        client.rcpt(LIST)
        code, text = client.data(raw)
    assert (code, text[:5]) == (554, b"5.6.3")
    assert count(db, Post) == 0
    # Declared, the same bytes are stored and read back correctly.
    assert smtp_send(receiver.port, "alice@example.org", [LIST], raw).code == 250
    with db.session() as s:
        assert "Crème brûlée" in s.scalar(select(Post.body))


def test_non_ascii_address_needs_smtputf8(als: str, receiver: Server) -> None:
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        client.send("MAIL FROM:<jürgen@example.org>\r\n".encode())
        code, text = client.getreply()
        assert (code, text[:5]) == (553, b"5.6.7")
        client.send("MAIL FROM:<jürgen@example.org> SMTPUTF8\r\n".encode())
        assert client.getreply()[0] == 250
        client.send("RCPT TO:<liste-ü@lists.example.org>\r\n".encode())
        assert client.getreply()[0] == 550  # a precise "no such list", not a crash


@pytest.mark.parametrize("name,header", [
    ("50 KB of Content-Type parameters",
     b"Content-Type: text/plain" + b"".join(b';\r\n p%d="v"' % i for i in range(5000))),
    ("a 100 KB Subject", b"Subject: " + b"\r\n ".join([b"x" * 900] * 110)),
    ("forty thousand header fields", b"X-A: b\r\n" * 40_000 + b"X-A: b"),
])
def test_crafted_headers_are_refused_within_a_second(als: str, post: Any, db: Database,
                                                     name: str, header: bytes) -> None:
    raw = (b"From: alice@example.org\r\nTo: " + LIST.encode() + b"\r\nMessage-ID: <c@x>\r\n"
           + header + b"\r\n\r\nhello\r\n")
    start = time.monotonic()
    reply = post(raw, sender="alice@example.org")
    assert time.monotonic() - start < 5.0, name  # a guard against a quadratic walk (minutes)
    assert (reply.code, reply.text[:5]) == (554, "5.6.0"), name
    assert count(db, Post) == 0


def test_an_overlong_line_is_refused_and_the_server_goes_on(als: str, post: Any,
                                                             db: Database) -> None:
    raw = (b"From: alice@example.org\r\nTo: " + LIST.encode() + b"\r\nSubject: long\r\n"
           b"Message-ID: <l@x>\r\n\r\n" + b"x" * 20_000 + b"\r\n")
    reply = post(raw, sender="alice@example.org")
    assert (reply.code, reply.text[:5]) == (500, "5.5.2")
    assert count(db, Post) == 0
    ok = make_message("alice@example.org", "Short", "fine", message_id="s@x")
    assert post(ok).code == 250


def test_utf7_and_unicode_escape_are_never_decoded_into_markup(als: str, post: Any,
                                                               db: Database) -> None:
    for charset, payload in [("utf-7", b"+ADw-script+AD4-alert(1)+ADw-/script+AD4-"),
                             ("unicode_escape", b"\\u003cscript\\u003ealert(1)")]:
        raw = (b"From: alice@example.org\r\nTo: " + LIST.encode()
               + b"\r\nSubject: cs\r\nMessage-ID: <" + charset.encode() + b"@x>\r\n"
               + b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n"
               + payload + b"\r\n")
        assert post(raw, sender="alice@example.org").code == 250
    with db.session() as s:
        bodies = s.scalars(select(Post.body)).all()
    assert len(bodies) == 2
    assert all("<script>" not in body for body in bodies)


def test_nothing_in_a_post_injects_headers_or_template_output(
        als: str, post: Any, drain: Any, sink: Sink) -> None:
    # Encoded CR/LF in the subject and the display name must not become header breaks.
    evil = (b"From: =?utf-8?q?Alice=0D=0AX-Injected:_1?= <alice@example.org>\r\n"
            b"To: " + LIST.encode() + b"\r\nMessage-ID: <evil@x>\r\n"
            b"Subject: =?utf-8?q?Hello=0D=0ABcc:_victim@example.com?= {{ 7 * 7 }}\r\n\r\n"
            b"Body {{ 7 * 7 }} {% if 1 %}yes{% endif %}\r\n")
    assert post(evil, sender="alice@example.org").code == 250
    drain()
    (delivered,) = [r.content for r in sink.received if "bob@example.net" in r.rcpt_tos]
    head, _, body = delivered.partition(b"\r\n\r\n")
    names = [line.split(b":")[0].lower() for line in head.split(b"\r\n")
             if line and not line[:1].isspace()]
    assert b"bcc" not in names and b"x-injected" not in names
    assert b"{{ 7 * 7 }}" in body and b"49" not in body
    assert b"{% if 1 %}yes{% endif %}" in body


def test_disk_full_during_data_answers_452_and_stores_nothing(
        sqlite_only: None, als: str, receiver: Server, db: Database) -> None:
    """A real SQLite 'database or disk is full': the receiver's connections may not grow
    the file by a single page (as a full file system would refuse)."""
    engine = receiver.db.engine

    @event.listens_for(engine, "connect")
    def full_disk(dbapi_conn: Any, _record: Any) -> None:
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    engine.dispose()
    big = make_message("alice@example.org", "Big", "words " * 20_000, message_id="full@x")
    reply = smtp_send(receiver.port, "alice@example.org", [LIST], big.as_bytes())
    assert (reply.code, reply.text[:5]) == (452, "4.3.1")
    assert count(db, Post) == 0
    # Space comes back: the client's retry is stored once, the server kept serving.
    event.remove(engine, "connect", full_disk)
    engine.dispose()
    assert smtp_send(receiver.port, "alice@example.org", [LIST], big.as_bytes()).code == 250
    assert count(db, Post) == 1


def test_shutdown_closes_idle_sessions_with_421(als: str, receiver: Server,
                                                loop_thread: Any) -> None:
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.settimeout(5)
        assert sock.recv(1000).startswith(b"220")
        start = time.monotonic()
        loop_thread.run(receiver.stop())
        assert sock.recv(1000).startswith(b"421 4.3.2")
        assert time.monotonic() - start < 2
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", receiver.port), timeout=1)


@pytest.fixture
def big_messages(config_data: dict[str, Any]) -> None:
    config_data["receiver"]["max_message_bytes"] = 20 * 1024 * 1024


def test_a_huge_base64_attachment_is_stored_quickly(big_messages: None, als: str,
                                                    post: Any, db: Database) -> None:
    msg = make_message("alice@example.org", "Scan", "The scan is attached.", message_id="b@x")
    msg.add_attachment(bytes(range(256)) * 40_000, maintype="application",
                       subtype="octet-stream", filename="scan.bin")  # 10 MB, 13.8 MB base64
    start = time.monotonic()
    assert post(msg).code == 250
    # A guard against work that grows with the square of the size (minutes for 14 MB), not
    # a speed figure: this takes 2.5-3.5 s on a busy two-core machine, mostly the transfer.
    assert time.monotonic() - start < 15.0
    with db.session() as s:
        assert s.scalar(select(Post.body)).strip() == "The scan is attached."


def test_database_unreachable_during_data_answers_451_then_serves_again(
        sqlite_only: None, als: str, receiver: Server, db: Database) -> None:
    path = Path(receiver.db.url.removeprefix("sqlite:///"))
    msg = make_message("alice@example.org", "Gone", "where is the disk?", message_id="u@x")
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo()
        assert client.mail("alice@example.org")[0] == 250
        assert client.rcpt(LIST)[0] == 250
        receiver.db.dispose()
        db.dispose()
        path.rename(path.with_suffix(".away"))
        path.mkdir()  # the database is gone while DATA arrives: nothing can open it here
        try:
            code, text = client.data(msg.as_bytes())
        finally:
            path.rmdir()
            path.with_suffix(".away").rename(path)
    assert (code, text[:5]) == (451, b"4.3.0")
    assert count(db, Post) == 0
    assert smtp_send(receiver.port, "alice@example.org", [LIST], msg.as_bytes()).code == 250
    assert count(db, Post) == 1


@pytest.mark.parametrize("arg", [
    "", "<>", "<alice@example.org>", "alice@example.org", " <alice@example.org> SIZE=10",
    '<"odd local"@example.org>', "<@relay.example:alice@example.org>", "<alice@[192.0.2.1]>",
    "<alice@example.org", "alice", "<<>>", "<a" + "x" * 70 + "@example.org>",
    "<ålice@exämple.org>", "<alice@example.org> BODY=8BITMIME",
])
def test_mail_and_rcpt_addresses_are_read_as_aiosmtpd_reads_them(arg: str) -> None:
    ours = ListservSMTP(Handler.__new__(Handler), SessionGate(1, "421"))
    theirs = SMTP(Handler.__new__(Handler))
    for limit in (0, 64):
        ours.local_part_limit = theirs.local_part_limit = limit
        assert ours._getaddr(arg) == theirs._getaddr(arg)


def client_from(address: str, port: int) -> smtplib.SMTP:
    """An SMTP client connecting from one of the loopback addresses (all of 127/8 is ours)."""
    return smtplib.SMTP("127.0.0.1", port, source_address=(address, 0), timeout=30)


@pytest.fixture
def thirty_sessions(config_data: dict[str, Any]) -> None:
    config_data["receiver"]["max_sessions"] = 30


def test_one_address_cannot_hold_every_session(thirty_sessions: None, als: str,
                                               receiver: Server, db: Database) -> None:
    """A prober at 127.0.0.2 opens transactions and keeps them alive with NOOP; it gets
    its share (20 sessions), and Alice, writing from 127.0.0.3, still gets her 250."""
    held: list[smtplib.SMTP] = []
    refused = []
    try:
        for _ in range(30):
            try:
                client = client_from("127.0.0.2", receiver.port)
            except smtplib.SMTPConnectError as exc:
                refused.append((exc.smtp_code, exc.smtp_error[:5]))
                continue
            client.ehlo("prober.example")
            assert client.mail("prober@example.net")[0] == 250
            assert client.noop()[0] == 250
            held.append(client)
        assert len(held) == 20
        assert refused == [(421, b"4.7.0")] * 10
        msg = make_message("alice@example.org", "Still open?", "x", message_id="share@x")
        with client_from("127.0.0.3", receiver.port) as alice:
            alice.ehlo("mx.example.org")
            alice.sendmail("alice@example.org", [LIST], msg.as_bytes())
    finally:
        for client in held:
            client.close()
    assert count(db, Post) == 1


def test_a_trusted_front_mta_is_not_held_to_the_per_address_cap(
        two_per_address: None, als: str, receiver: Server) -> None:
    """Postfix in front of us sends everything from 127.0.0.1 (a default trusted relay)."""
    clients = [client_from("127.0.0.1", receiver.port) for _ in range(3)]
    try:
        assert all(c.ehlo()[0] == 250 for c in clients)
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            [client_from("127.0.0.2", receiver.port) for _ in range(3)]
        assert refused.value.smtp_code == 421
    finally:
        for client in clients:
            client.close()


def test_a_transaction_cannot_be_kept_open_with_noop(als: str, receiver: Server,
                                                     clock: Any) -> None:
    """Each NOOP used to restart the clock; now a transaction has two minutes in all."""
    with client_from("127.0.0.2", receiver.port) as client:
        client.ehlo("prober.example")
        assert client.mail("prober@example.net")[0] == 250
        for _ in range(4):
            clock.advance(seconds=25)
            assert client.noop()[0] == 250
        clock.advance(seconds=25)  # 125 s since MAIL FROM
        code, text = client.noop()
        assert (code, text[:5]) == (421, b"4.4.2")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_commands_without_progress_are_capped(als: str, receiver: Server,
                                              db: Database) -> None:
    """NOOP, RSET and HELP make no progress: 20 of them without a message stored, then 421.
    A message stored starts the count again, so a relay reusing its connection goes on."""
    with client_from("127.0.0.2", receiver.port) as client:
        client.ehlo("prober.example")
        for i in range(20):
            assert client.docmd(("NOOP", "RSET", "HELP")[i % 3])[0] in (250, 214)
        msg = make_message("alice@example.org", "Progress", "x", message_id="progress@x")
        client.sendmail("alice@example.org", [LIST], msg.as_bytes())
        for _ in range(20):
            assert client.noop()[0] == 250
        code, text = client.noop()
        assert (code, text[:5]) == (421, b"4.7.0")
    assert count(db, Post) == 1


class Quiet:
    """A session as the gate sees it: no transport, no open transaction."""

    transport = None
    in_transaction = False


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    """One IPv6 host has 2**64 addresses of its own: its share is counted by the /64."""
    gate = SessionGate(100, "421", per_ip=2, trusted=["::1", "10.0.0.0/8"])
    for address in ("2001:db8::1", "2001:db8::ffff:2"):
        assert not gate.crowded(address)
        assert gate.admit(Quiet(), address)
    assert gate.crowded("2001:db8::abcd")
    assert not gate.crowded("2001:db8:0:1::1")  # the next /64: another site
    for _ in range(3):  # trusted relays, a network among them, are never crowded
        assert gate.admit(Quiet(), "::1") and gate.admit(Quiet(), "10.1.2.3")
    assert not gate.crowded("::1") and not gate.crowded("10.1.2.3")
