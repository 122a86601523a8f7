"""Tests for listserv.robots: one table per rule, then the shared real-world corpus."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage, Message
from email.utils import parseaddr
from pathlib import Path

import pytest

from listserv.core.addresses import remembered
from listserv.core.robots import RULES, robot_reason
from tests.corpus import corpus_dir, corpus_files

HUMAN = "alice@example.org"
LIST_ID = "devel.lists.example.org"
LOOP = "devel@lists.example.org"


Headers = dict[str, str | list[str]]


def make(headers: Headers | None = None, subject: str = "Re: build fails") -> Message:
    """A plain human-looking message with `headers` added (list values give duplicates)."""
    msg = EmailMessage()
    msg.set_content("I think the patch is fine.\n")
    msg["From"] = f"Alice <{HUMAN}>"
    msg["To"] = LOOP
    msg["Subject"] = subject
    for name, value in (headers or {}).items():
        del msg[name]  # a given header replaces the default one (e.g. Content-Type)
        for one in value if isinstance(value, list) else [value]:
            msg[name] = one
    return msg


def reason(msg: Message, envelope: str = HUMAN) -> str | None:
    return robot_reason(msg, envelope_sender=envelope, our_list_ids=[LIST_ID], our_loop_value=LOOP)


# --- human mail passes --------------------------------------------------------------------

HUMANS = [
    pytest.param({}, id="no-signals"),
    pytest.param({"Precedence": "normal"}, id="precedence-normal"),
    pytest.param({"Auto-Submitted": "no"}, id="auto-submitted-no"),
    pytest.param({"Auto-Submitted": "No (manually sent)"}, id="auto-submitted-no-comment"),
    pytest.param({"Auto-Submitted": ""}, id="auto-submitted-empty"),
    # Outlook puts a partial suppression request on ordinary mail (Discourse quirk fixture).
    pytest.param({"X-Auto-Response-Suppress": "DR, RN, NRN, OOF, AutoReply"}, id="xars-partial"),
    # A foreign list's List-Id alone is a member resending/cross-posting: human (our policy).
    pytest.param({"List-Id": "Other <other.lists.example.net>"}, id="foreign-list-id"),
    pytest.param({"List-Unsubscribe": "<mailto:leave@news.example.net>"}, id="foreign-list-unsub"),
    pytest.param({"X-BeenThere": "other@lists.example.net"}, id="foreign-beenthere"),
    pytest.param({"X-Mailer": "Microsoft Outlook 16.0"}, id="ordinary-mailer"),
    pytest.param({"Content-Type": "multipart/mixed; boundary=x"}, id="multipart-mixed"),
    pytest.param({"X-Autoreply": "no"}, id="x-autoreply-no"),
]


@pytest.mark.parametrize("headers", HUMANS)
def test_human_mail_passes(headers: Headers) -> None:
    assert reason(make(headers)) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Out of Office policy",
        "Out of office next week",  # a person announcing absence: no tag colon
        "Fwd: Automatic reply: foo",  # not at the start
        "Re: Auto: foo",
        "Vacation: photos from Italy",
        "The autoreply feature is broken",
        "",
    ],
)
def test_human_subjects_pass(subject: str) -> None:
    assert reason(make(subject=subject)) is None


# --- one table per rule ---------------------------------------------------------------------

ENVELOPES = [
    ("", "empty envelope sender (bounce)"),
    ("<>", "empty envelope sender (bounce)"),
    ("  < >  ", "empty envelope sender (bounce)"),
    ("<MAILER-DAEMON>", "envelope sender mailer-daemon (bounce)"),
    ("MAILER-DAEMON@mx.example.com", "envelope sender mailer-daemon (bounce)"),
    ("<postmaster@example.com>", "envelope sender postmaster (bounce)"),
    ("Mailer_Daemon@example.com", "envelope sender mailer_daemon (bounce)"),
]


@pytest.mark.parametrize(("envelope", "expected"), ENVELOPES)
def test_envelope_rules(envelope: str, expected: str) -> None:
    assert reason(make(), envelope=envelope) == expected


LOOPS = [
    ({"X-BeenThere": LOOP}, f"X-BeenThere: {LOOP} (loop)"),
    ({"X-BeenThere": LOOP.upper()}, f"X-BeenThere: {LOOP.upper()} (loop)"),
    ({"X-BeenThere": ["other@example.net", f"<{LOOP}>"]}, f"X-BeenThere: <{LOOP}> (loop)"),
    ({"X-Loop": LOOP}, f"X-Loop: {LOOP} (loop)"),
    ({"List-Id": f"Devel list <{LIST_ID}>"}, "our own List-Id (loop)"),
    ({"List-Id": f"<{LIST_ID.upper()}>"}, "our own List-Id (loop)"),
    ({"List-Id": ["<x.example.net>", f"<{LIST_ID}>"]}, "our own List-Id (loop)"),
]


@pytest.mark.parametrize(("headers", "expected"), LOOPS)
def test_loop_rules(headers: Headers, expected: str) -> None:
    assert reason(make(headers)) == expected


def test_loop_rules_need_our_values() -> None:
    msg = make({"X-BeenThere": LOOP, "List-Id": f"<{LIST_ID}>"})
    assert robot_reason(msg, envelope_sender=HUMAN) is None
    assert robot_reason(msg, envelope_sender=HUMAN, our_list_ids=[f"<{LIST_ID}>"]) == (
        "our own List-Id (loop)"
    )


HEADER_RULES = [
    # RFC 3834 Auto-Submitted
    ({"Auto-Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
    ({"Auto-Submitted": "auto-generated (failure)"}, "Auto-Submitted: auto-generated"),
    ({"Auto-Submitted": "Auto-Notified; owner-email=x@y"}, "Auto-Submitted: auto-notified"),
    ({"Auto-Submitted": ["no", "auto-replied"]}, "Auto-Submitted: auto-replied"),
    # Precedence (list is a robot by our policy)
    ({"Precedence": "bulk"}, "Precedence: bulk"),
    ({"Precedence": "Junk"}, "Precedence: junk"),
    ({"Precedence": "list"}, "Precedence: list"),
    ({"Precedence": "auto_reply"}, "Precedence: auto_reply"),
    # vendor autoresponder headers
    ({"X-Autoreply": "yes"}, "X-Autoreply header"),
    ({"X-Autorespond": "Out of office"}, "X-Autorespond header"),
    ({"X-Autogenerated": "Reply"}, "X-Autogenerated header"),
    ({"X-FC-MachineGenerated": "true"}, "X-FC-MachineGenerated header"),
    # Microsoft Exchange
    (
        {"X-MS-Exchange-Inbox-Rules-Loop": HUMAN},
        "X-MS-Exchange-Inbox-Rules-Loop header (Exchange rule)",
    ),
    ({"X-Auto-Response-Suppress": "All"}, "X-Auto-Response-Suppress: All"),
    ({"X-Auto-Response-Suppress": "DR, All"}, "X-Auto-Response-Suppress: All"),
    # vacation programs naming themselves
    ({"X-Mailer": "vacation 1.2"}, "X-Mailer: vacation 1.2 (vacation program)"),
    ({"User-Agent": "Auto-Responder 3"}, "User-Agent: Auto-Responder 3 (vacation program)"),
    # reports
    (
        {"Content-Type": "multipart/report; report-type=delivery-status; boundary=b"},
        "Content-Type multipart/report (DSN)",
    ),
    (
        {"Content-Type": "MULTIPART/REPORT; REPORT-TYPE=disposition-notification; boundary=b"},
        "Content-Type multipart/report (MDN)",
    ),
]


@pytest.mark.parametrize(("headers", "expected"), HEADER_RULES)
def test_header_rules(headers: Headers, expected: str) -> None:
    assert reason(make(headers)) == expected


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("Mail Delivery System <MAILER-DAEMON@example.com>", "From: mailer-daemon (robot sender)"),
        ("postmaster@example.com (Postmaster)", "From: postmaster (robot sender)"),
        ("Shop <no-reply@shop.example>", "From: no-reply (robot sender)"),
        ("noreply+123@example.com", "From: noreply+123 (robot sender)"),
    ],
)
def test_robot_from(sender: str, expected: str) -> None:
    msg = make()
    msg.replace_header("From", sender)
    assert reason(msg) == expected


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: build fails",
        "Auto: Alice is out of the office",
        "AUTO: Alice is out of the office (returning 05/05/2025)",
        "Out of Office: Re: build fails",
        "Out of Office AutoReply: build fails",
        "Auto-Reply: your message",
        "Autoreply: your message",
        "Vacation reply: back soon",
        "Abwesenheitsnotiz: Re: Build",
        "Automatische Antwort: Build",
        "Réponse automatique : Build",
        "Autosvar: Build",
        "Automatisk svar: Build",
        "Respuesta automática: Build",
        "Risposta automatica: Build",
        "Automatisch antwoord: Build",
        "自动回复：Build",
        "  automatic REPLY:Build",
    ],
)
def test_out_of_office_subjects(subject: str) -> None:
    assert reason(make(subject=subject)) == "out-of-office subject"


def test_encoded_subject_is_decoded() -> None:
    raw = b"From: a@example.org\nSubject: =?utf-8?q?R=C3=A9ponse_automatique=3A?= x\n\nbody\n"
    for policy in (email.policy.default, email.policy.compat32):
        msg = email.message_from_bytes(raw, policy=policy)
        assert reason(msg) == "out-of-office subject"


def test_first_match_wins_in_table_order() -> None:
    headers: Headers = {"Precedence": "bulk", "Auto-Submitted": "auto-replied"}
    msg = make(headers, subject="Automatic reply: x")
    assert reason(msg, envelope="<>") == "empty envelope sender (bounce)"
    assert reason(msg) == "Auto-Submitted: auto-replied"
    names = [name for name, _ in RULES]
    assert len(names) == len(set(names))


def test_plain_mapping_is_accepted() -> None:
    headers = {"from": HUMAN, "AUTO-SUBMITTED": "auto-replied"}
    assert robot_reason(headers, envelope_sender=HUMAN) == "Auto-Submitted: auto-replied"
    assert robot_reason({"Subject": "hello"}, envelope_sender=HUMAN) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"From: <<<@@@>>>\nSubject: =?bogus?x?zz?=\nContent-Type: ;;;\nList-Id: <\n"
        b"Auto-Submitted: (\nX-BeenThere:\nPrecedence: \xff\xfe\n\nbody\n",
        b'From: "unterminated <a@b\nTo: ,,,,\nSubject:\n\n',
        b"",
        b"\n\nonly body",
        b'From: a@example.org\nContent-Type: multipart/report; boundary="\n\nx',
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    for policy in (email.policy.default, email.policy.compat32):
        msg = email.message_from_bytes(raw, policy=policy)
        result = robot_reason(
            msg, envelope_sender="\x00<>garbage", our_list_ids=["", "<>"], our_loop_value=""
        )
        assert result is None or isinstance(result, str)


# --- the shared corpus ----------------------------------------------------------------------
# The corpus stores messages as delivered, without their SMTP envelope. We stand in for it
# with Return-Path if present, else the From address, else (headerless after parsing) an
# arbitrary non-empty address: a file that lacks both says nothing about MAIL FROM.

UNKNOWN_ENVELOPE = "unknown-envelope@corpus.invalid"


def load(path: Path) -> tuple[Message, str]:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    envelope = None
    for name in ("Return-Path", "From"):
        values = msg.get_all(name)
        if values:
            envelope = str(values[0]) if name == "Return-Path" else parseaddr(str(values[0]))[1]
            break
    return msg, UNKNOWN_ENVELOPE if envelope is None else envelope


def eml_for(expected: Path) -> Path:
    return expected.with_name(expected.name.removesuffix(".expected.json") + ".eml")


@pytest.mark.parametrize("expected", corpus_files("auto", "*.expected.json"), ids=lambda p: p.name)
def test_corpus_auto(expected: Path) -> None:
    corpus_dir("auto")
    want = json.loads(expected.read_text(encoding="utf-8"))
    msg, envelope = load(eml_for(expected))
    got = robot_reason(msg, envelope_sender=envelope)
    assert (got is not None) == want["is_auto_reply"], got
    assert (got is None) == want["should_post"], got


@pytest.mark.parametrize(
    "expected", corpus_files("bounces", "*.expected.json"), ids=lambda p: p.name
)
def test_corpus_bounces(expected: Path) -> None:
    corpus_dir("bounces")
    want = json.loads(expected.read_text(encoding="utf-8"))
    msg, envelope = load(eml_for(expected))
    got = robot_reason(msg, envelope_sender=envelope)
    # Every DSN is a robot. The "is_bounce": false entries are ordinary human messages (one
    # forwards an original as message/rfc822), so they must pass like any human mail.
    assert (got is not None) == want["is_bounce"], got


@pytest.mark.parametrize("eml", corpus_files("replies", "*.eml"), ids=lambda p: p.name)
def test_corpus_replies_are_human(eml: Path) -> None:
    corpus_dir("replies")
    msg, envelope = load(eml)
    assert robot_reason(msg, envelope_sender=envelope) is None


def test_addresses_read_before_are_remembered_but_hostile_long_values_never_are() -> None:
    # Robots and the From parser remember what they read (the same people write again and
    # again); a 64 KB header must not be kept, or a few thousand posts would fill memory.
    calls: list[str] = []

    @remembered
    def read(value: str) -> int:
        calls.append(value)
        return len(value)

    long = "x" * 10_000 + " <a@example.org>"
    for value in ("Alice <alice@example.org>", "Alice <alice@example.org>", long, long):
        assert read(value) == len(value)
    assert calls == ["Alice <alice@example.org>", long, long]
