"""Headers written in raw UTF-8 (RFC 6532), as many clients and providers send them, keep
every character: in the stored post, in each member's copy, and in the thread a reply joins
when its client wrote the same subject as an RFC 2047 encoded word."""

from __future__ import annotations

import smtplib
from email.header import Header
from email.utils import parseaddr
from typing import Any

import pytest
from sqlalchemy import select

from listserv.store.database import Database
from listserv.store.models import Post, Thread

from .conftest import LIST, Sink, count

pytestmark = pytest.mark.both_databases

PEOPLE = [
    ("Amélie Poulain", "amelie@example.fr", "Café et kinésithérapie : qu'en pensez-vous ?"),
    ("Jürgen Groß", "juergen@example.de", "Übungen für die Schultermuskulatur"),
    ("José Núñez", "jose@example.es", "¿Alguien probó la fisioterapia acuática?"),
    ("Ελένη Παπαδοπούλου", "eleni@example.gr", "Ερώτηση για τη φυσικοθεραπεία"),
    ("Дмитрий Иванов", "dmitry@example.ru", "Вопрос о массаже и растяжке"),
    ("李小龙", "li@example.cn", "按摩治疗有帮助吗？"),
    ("Zoë 🌻", "zoe@example.org", "Good news 🎉 walking again 🚶"),
]


def send_raw(port: int, sender: str, content: bytes, smtputf8: bool) -> int:
    """One post over a real socket, declaring 8BITMIME, and SMTPUTF8 when asked."""
    options = ["BODY=8BITMIME", *(["SMTPUTF8"] if smtputf8 else [])]
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.net")
        assert client.mail(sender, options)[0] == 250
        assert client.rcpt(LIST)[0] == 250
        return client.data(content)[0]


def utf8_post(name: str, address: str, subject: str, mid: str) -> bytes:
    return (
        f"From: {name} <{address}>\r\nTo: {LIST}\r\nSubject: {subject}\r\n"
        f"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{mid}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\nBonjour, {name}.\r\n"
    ).encode()


def test_names_and_subjects_in_raw_utf8_survive_in_every_script(
    als: str, cli: Any, receiver: Any, drain: Any, sink: Sink, db: Database
) -> None:
    for name, address, _subject in PEOPLE:
        assert cli("members", "add", LIST, address, "--name", name).exit_code == 0
    for i, (name, address, subject) in enumerate(PEOPLE):
        # Some clients declare SMTPUTF8, many send UTF-8 headers with 8BITMIME only.
        code = send_raw(
            receiver.port,
            address,
            utf8_post(name, address, subject, f"p{i}@x"),
            smtputf8=i % 2 == 0,
        )
        assert code == 250
    with db.session() as s:
        stored = {p.message_id: (p.author_name, p.subject) for p in s.scalars(select(Post))}
    assert stored == {
        f"p{i}@x": (name, subject) for i, (name, _address, subject) in enumerate(PEOPLE)
    }

    drain()
    copies = {m["Message-ID"]: m for m in sink.to("dave@example.org")}
    for i, (name, _address, subject) in enumerate(PEOPLE):
        copy = copies[f"<p{i}@x>"]
        assert copy["Subject"] == f"[Living with ALS] {subject}"
        assert copy["From"].addresses[0].display_name == f"{name} via Living with ALS"
        assert parseaddr(str(copy["X-Original-From"]))[0] == name
        assert "\ufffd" not in copy.as_string()

    # Bob's client writes the same subjects as encoded words and drops In-Reply-To: each
    # reply still joins the thread of the post it answers.
    for i, (_name, _address, subject) in enumerate(PEOPLE):
        encoded = Header(f"Re: {subject}", "utf-8").encode()
        reply = (
            f"From: Bob Baker <bob@example.net>\r\nTo: {LIST}\r\nSubject: {encoded}\r\n"
            f"Message-ID: <r{i}@x>\r\n\r\nSame here.\r\n"
        ).encode()
        assert send_raw(receiver.port, "bob@example.net", reply, smtputf8=False) == 250
    assert count(db, Thread) == len(PEOPLE)
    with db.session() as s:
        assert {t.subject: t.post_count for t in s.scalars(select(Thread))} == {
            subject: 2 for _name, _address, subject in PEOPLE
        }


def test_raw_8bit_headers_that_are_not_utf8_are_read_as_latin1(
    als: str, cli: Any, receiver: Any, db: Database
) -> None:
    # An old client writing ISO-8859-1 straight into the headers.
    assert cli("members", "add", LIST, "francois@example.fr").exit_code == 0
    raw = (
        b"From: Fran\xe7ois Lef\xe8vre <francois@example.fr>\r\nTo: "
        + LIST.encode()
        + b"\r\nSubject: R\xe9union \xe0 la piscine\r\nMessage-ID: <l1@x>\r\n\r\n"
        b"A bient\xf4t\r\n"
    )
    assert send_raw(receiver.port, "francois@example.fr", raw, smtputf8=False) == 250
    with db.session() as s:
        post = s.scalars(select(Post)).one()
    assert (post.author_name, post.subject) == ("François Lefèvre", "Réunion à la piscine")


def test_encoded_words_beside_raw_utf8_are_decoded_and_the_rest_kept(
    als: str, receiver: Any, db: Database
) -> None:
    # One header mixing both: raw UTF-8 text, then an encoded word, as some gateways write.
    raw = (
        "From: Alice Archer <alice@example.org>\r\nTo: " + LIST + "\r\n"
        "Subject: Café \\u00e9 =?utf-8?q?cr=C3=A8me?= =?utf-8?q?_br=C3=BBl=C3=A9e?=\r\n"
        "Message-ID: <m1@x>\r\n\r\nmixed\r\n"
    ).encode()
    assert send_raw(receiver.port, "alice@example.org", raw, smtputf8=True) == 250
    with db.session() as s:
        assert s.scalar(select(Post.subject)) == "Café \\u00e9 crème brûlée"


def test_a_notice_to_a_utf8_address_names_it_as_written() -> None:
    """A confirmation to jörg@bücher.example: an encoded word cannot hold an address, so
    the notice's header section is raw UTF-8 (RFC 6532), sent with SMTPUTF8."""
    from datetime import UTC, datetime
    from email import message_from_bytes, policy

    from listserv.core import notices

    notice = notices.compose(
        rendered="Subject: Bestätigen Sie bitte\n\nAntworten Sie auf diese Nachricht.\n",
        template_name="confirm_join.txt", from_name="Leben mit ALS",
        from_address="als-request@lists.example.org",
        envelope_sender="als-bounces@lists.example.org", recipient="jörg@bücher.example",
        list_id="als.lists.example.org", loop_value="als@lists.example.org",
        message_id="n1@lists.example.org", now=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    )
    assert b"\r\nTo: j\xc3\xb6rg@b\xc3\xbccher.example\r\n" in notice.payload
    msg = message_from_bytes(notice.payload, policy=policy.default)
    assert msg["Subject"] == "Bestätigen Sie bitte"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content().strip() == "Antworten Sie auf diese Nachricht."
