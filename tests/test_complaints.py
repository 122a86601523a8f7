"""Spam complaints (ARF, RFC 5965): the member who complained leaves the list, and nobody
else can be unsubscribed with a made-up report: only a token we signed into one member's
copy names the complainer, and one report removes one member at most."""

from __future__ import annotations

import json
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import select

from listserv.core.complaints import parse_arf
from listserv.core.message import Malformed
from listserv.inbound.incoming import Incoming
from listserv.store.database import Database
from listserv.store.models import Member, MemberEvent

from .conftest import LIST, Sink, make_message

FBL = "living-with-als-fbl@lists.example.org"
BOUNCES = "living-with-als-bounces@lists.example.org"


def read(report: bytes) -> Message:
    """The report as the receiver reads it for the report handlers, well-formed first."""
    incoming = Incoming(report, "", (FBL,))
    assert not isinstance(incoming.parsed, Malformed)
    return incoming.tree


def arf(original: bytes, *, feedback_type: str = "abuse", rcpt: str | None = None,
        headers_only: bool = False, more_rcpts: tuple[str, ...] = ()) -> bytes:
    """A feedback report as providers send it (RFC 5965 section 5, example 2)."""
    fields = f"Feedback-Type: {feedback_type}\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
    for address in (rcpt, *more_rcpts) if rcpt else more_rcpts:
        fields += f"Original-Rcpt-To: {address}\r\n"
    if headers_only:
        kind, content = "text/rfc822-headers", original.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    else:
        kind, content = "message/rfc822", original
    return (
        b"From: <abuse@provider.example>\r\nTo: <" + FBL.encode() + b">\r\n"
        b"Subject: FW: complaint\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <fbl1@provider.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        b"--b1\r\nContent-Type: message/feedback-report\r\n\r\n" + fields.encode() + b"\r\n"
        b"--b1\r\nContent-Type: " + kind.encode() + b"\r\n\r\n" + content + b"\r\n--b1--\r\n"
    )


def members(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Member.address).order_by(Member.id)))


def events(db: Database) -> list[tuple[str, str]]:
    with db.session() as s:
        return [(e.address, e.kind) for e in s.scalars(select(MemberEvent))]


def delivered_to(post: Any, drain: Any, sink: Sink, address: str) -> bytes:
    """Bob's copy as his mailbox keeps it: the receiving MTA added Return-Path."""
    msg = make_message("alice@example.org", "Hello", "Hello all.", message_id="h@example.org")
    assert post(msg).code == 250
    drain()
    (copy,) = [r for r in sink.received if address in r.rcpt_tos]
    return f"Return-Path: <{copy.mail_from}>\r\n".encode() + copy.content


@pytest.fixture
def web_on(config_data: dict[str, Any]) -> None:
    config_data["web"] = {"host": "127.0.0.1", "port": 0,
                          "base_url": "https://lists.example.org"}


def test_complaint_with_the_members_token_unsubscribes_them(
    web_on: None, als: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    original = delivered_to(post, drain, sink, "bob@example.net")
    # Providers often hide the recipient; the token in List-Unsubscribe still names bob.
    redacted = original.replace(b"bob@example.net", b"redacted@provider.example")
    assert post(arf(redacted), to=[FBL], sender="").code == 250
    assert "bob@example.net" not in members(db)
    assert events(db) == [("bob@example.net", "complaint")]
    assert len(members(db)) == 4
    # Providers expect silence: bob is not written to about it.
    sink.received.clear()
    drain()
    assert sink.to("bob@example.net") == []


@pytest.fixture
def generic_unsubscribe(config_data: dict[str, Any]) -> None:
    config_data["security"] = {"personal_unsubscribe": False}


def test_complaint_with_the_copys_signed_verp_return_path_unsubscribes_its_member(
    generic_unsubscribe: None, als: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    """Without personal links, the signed VERP envelope sender still names the copy."""
    original = delivered_to(post, drain, sink, "dave@example.org")
    assert b"-leave+" not in original
    report = arf(original.replace(b"dave@example.org", b"x@provider.example"),
                 headers_only=True)
    assert post(report, to=[BOUNCES], sender="").code == 250
    assert events(db) == [("dave@example.org", "complaint")]


def test_forged_complaint_naming_every_member_unsubscribes_nobody(
    als: str, post: Any, drain: Any, sink: Sink, db: Database, cli: Any, clock: Any
) -> None:
    """The probe: the list's public List-Id and any number of Original-Rcpt-To lines."""
    before = members(db)
    forged = (f"From: {LIST}\r\nTo: victim@example.org\r\nSubject: spam\r\n"
              "List-Id: Living with ALS <living-with-als.lists.example.org>\r\n"
              "List-Unsubscribe: <mailto:living-with-als-leave@lists.example.org>\r\n"
              "Return-Path: <living-with-als-bounces+bob=example.net@lists.example.org>\r\n"
              "\r\nx\r\n").encode()
    report = arf(forged, rcpt=before[0], more_rcpts=tuple(before[1:]), headers_only=True)
    assert post(report, to=[FBL], sender="").code == 250
    assert post(report, to=[BOUNCES], sender="").code == 250
    assert members(db) == before
    # Counted for the owners, though nobody was removed.
    result = cli("report", LIST, "--since", clock().date().isoformat(), "--json")
    assert json.loads(result.output)[0]["complaints"] == 2
    assert events(db) == [("", "complaint-none"), ("", "complaint-none")]


def test_one_complaint_carrying_two_members_copies_unsubscribes_nobody(
    web_on: None, als: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    bob = delivered_to(post, drain, sink, "bob@example.net")
    (dave,) = [r.content for r in sink.received if "dave@example.org" in r.rcpt_tos]
    before = members(db)
    # Someone who holds two copies (or two colluding members) cannot remove both.
    dave_links = [line for line in dave.split(b"\r\n") if line.startswith(b"List-Unsub")]
    stuffed = bob.replace(b"List-Unsubscribe:", dave_links[0] + b"\r\nX-Was:", 1)
    assert post(arf(stuffed), to=[FBL], sender="").code == 250
    assert members(db) == before


def test_made_up_reports_unsubscribe_nobody(
    web_on: None, als: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    original = delivered_to(post, drain, sink, "bob@example.net")
    before = members(db)
    # Not about our list's mail: the bare Original-Rcpt-To is not believed.
    stranger = make_message("x@spam.example", "Hi", "x", to="dave@example.org").as_bytes()
    assert post(arf(stranger, rcpt="dave@example.org"), to=[FBL], sender="").code == 250
    # A forged token (and no Return-Path to go by).
    start = original.index(b"/u/u-") + 3
    token = original[start:original.index(b">", start)]
    forged = original.replace(token, token[:-4] + b"aaaa").split(b"\r\n", 1)[1]
    assert post(arf(forged), to=[FBL], sender="").code == 250
    # "This is not spam" is no reason to leave.
    assert post(arf(original, feedback_type="not-spam"), to=[FBL], sender="").code == 250
    # An ordinary message to the feedback address.
    plain = make_message("x@spam.example", "hello", "not a report", to=FBL)
    assert post(plain, to=[FBL], sender="x@spam.example").code == 250
    assert members(db) == before
    assert events(db) == [("", "complaint-none")] * 2


@pytest.mark.parametrize("headers_only", [False, True])
def test_parse_arf_reads_fields_and_tokens(headers_only: bool) -> None:
    original = (b"From: Alice via Living with ALS <living-with-als@lists.example.org>\r\n"
                b"To: living-with-als@lists.example.org\r\nSubject: Hello\r\n"
                b"List-Id: Living with ALS <living-with-als.lists.example.org>\r\n"
                b"List-Unsubscribe: <https://lists.example.org/u/u-7-0-abcdefghijklmnop>,\r\n"
                b" <mailto:living-with-als-leave+u-7-0-abcdefghijklmnop@lists.example.org>\r\n"
                b"\r\nHello all.\r\n")
    complaint = parse_arf(read(arf(original, rcpt="Bob@Example.NET",
                                   headers_only=headers_only)))
    assert complaint is not None
    assert complaint.feedback_type == "abuse" and complaint.is_spam_complaint
    assert complaint.recipients == ("Bob@example.net",)
    assert complaint.tokens == ("u-7-0-abcdefghijklmnop",)
    assert complaint.list_ids == ("living-with-als.lists.example.org",)


def test_parse_arf_ignores_other_messages() -> None:
    plain = make_message("a@example.org", "s", "b").as_bytes()
    assert parse_arf(read(plain)) is None
    dsn = plain.replace(b"text/plain", b"multipart/report; report-type=delivery-status")
    assert parse_arf(read(dsn)) is None
