"""Tests for listserv.bounces: DSN recognition against the shared corpus, and score arithmetic."""

from __future__ import annotations

import email
import email.message
import json
from datetime import date
from email import policy
from pathlib import Path

import pytest

from listserv.core.bounce_score import (
    BounceScore,
    add_bounce,
    is_policy_rejection,
    should_disable,
)
from listserv.core.bounces import BouncedRecipient, BounceReport, parse_bounce
from listserv.core.stats import failure_kind
from tests.corpus import corpus_dir, corpus_files

POLICIES = {"compat32": policy.compat32, "default": policy.default}

# Where the corpus expects something else, and why.  Each stays a strict xfail so that the
# pass rate shows and a fix (or a regression in the other direction) is noticed.
_ORIGINAL_RECIPIENT = (
    "by design: we report a DSN's Original-Recipient (the address the list sent to, which "
    "is what matches a member) and the expectation uses the Final-Recipient after forwarding"
)
KNOWN_MISSES = {
    "discourse_bounced_email_multiple_status_codes": _ORIGINAL_RECIPIENT
    + " (both blocks carry Original-Recipient linux-admin@, so foo@ is not reported)",
    "sisimai_lhost-postfix-01_dos": _ORIGINAL_RECIPIENT
    + " (r@p351355... was expanded from kijitora@example.org)",
    "sisimai_rfc3464-09": _ORIGINAL_RECIPIENT
    + " (kijitora-cat@mx4... was forwarded from kijitora-nyaaaaaan@example.co.jp)",
    "flufl_sendmail_01": "flufl.bounce's SimpleMatch detector reports both the alias target "
    "zzzzz@shaft.coal.nl and the address it was expanded from (no DSN part to read instead)",
}


def _stem(path: Path) -> str:
    return path.name.removesuffix(".expected.json")


def _corpus_params() -> list[object]:
    params = []
    for path in corpus_files("bounces", "*.expected.json"):
        for name in POLICIES:
            reason = KNOWN_MISSES.get(_stem(path))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(path, name, id=f"{_stem(path)}-{name}", marks=marks))
    # Without the corpus, one placeholder lets corpus_dir() skip with its explanation.
    return params or [pytest.param(None, "compat32", id="corpus-missing")]


def _normalised(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def _load(path: Path, policy_name: str) -> email.message.Message:
    return email.message_from_bytes(path.read_bytes(), policy=POLICIES[policy_name])


@pytest.mark.parametrize(("expected_path", "policy_name"), _corpus_params())
def test_corpus_bounce(expected_path: Path | None, policy_name: str) -> None:
    folder = corpus_dir("bounces")
    assert expected_path is not None
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    report = parse_bounce(_load(folder / f"{_stem(expected_path)}.eml", policy_name))

    assert (report is not None) == expected["is_bounce"]
    got = {r.address: r for r in report.recipients} if report else {}
    want = {_normalised(r["address"]): r for r in expected["recipients"]}
    assert set(got) == set(want)
    assert {a: r.permanent for a, r in got.items()} == {a: w["permanent"] for a, w in want.items()}
    # Action and status are only known for some formats; what we do report must agree.
    for address, recipient in got.items():
        for field in ("action", "status"):
            ours = getattr(recipient, field)
            if ours is not None and field in want[address]:
                assert ours == want[address][field], (address, field)


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.stem) for p in corpus_files("auto", "*.eml")]
    or [pytest.param(None, id="corpus-missing")],
)
def test_auto_replies_are_not_bounces(path: Path | None) -> None:
    corpus_dir("auto")
    assert path is not None
    for policy_name in POLICIES:
        assert parse_bounce(_load(path, policy_name)) is None
        # RFC 3834 responders use the null sender, as bounces do.
        assert parse_bounce(_load(path, policy_name), "") is None


# --- synthetic messages -------------------------------------------------------------------


def _dsn(
    *blocks: str, content_type: str = "multipart/report; report-type=delivery-status"
) -> bytes:
    per_recipient = "\n\n".join(blocks)
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        "To: list-bounces@lists.example.org\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: {content_type}; boundary="B"\n'
        "\n"
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\n"
        f"{per_recipient}\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        "From: list@lists.example.org\nSubject: hello\n\n"
        "--B--\n"
    ).encode()


def _parse(data: bytes, policy_name: str = "compat32") -> BounceReport | None:
    return parse_bounce(email.message_from_bytes(data, policy=POLICIES[policy_name]))


@pytest.mark.parametrize("policy_name", POLICIES)
def test_dsn_fields_are_read_per_recipient(policy_name: str) -> None:
    data = _dsn(
        "Final-Recipient: rfc822; Gone@Example.COM\nAction: failed\nStatus: 5.1.1",
        "Final-Recipient: rfc822; full@example.com\nAction: delayed\nStatus: 4.2.2 (mailbox full)",
        "Final-Recipient: rfc822; fine@example.com\nAction: delivered\nStatus: 2.0.0",
    )
    assert _parse(data, policy_name) == BounceReport(
        (
            BouncedRecipient("Gone@example.com", True, "failed", "5.1.1"),
            BouncedRecipient("full@example.com", False, "delayed", "4.2.2"),
        )
    )


def test_original_recipient_is_preferred_then_final() -> None:
    data = _dsn(
        "Final-Recipient: rfc822; box7@mail.example.com\n"
        "Original-Recipient: rfc822;member@example.org\nAction: failed\nStatus: 5.1.1",
        "Final-Recipient: rfc822; other@example.org\n"
        "Original-Recipient: x400; c=US;a=;p=Example\nAction: failed\nStatus: 5.1.1",
    )
    report = _parse(data)
    assert report is not None
    assert [r.address for r in report.recipients] == ["member@example.org", "other@example.org"]


def test_utf8_address_type_and_missing_action() -> None:
    data = _dsn("Final-Recipient: utf-8; j\\x{FC}rgen@example.de\nStatus: 5.1.1")
    report = _parse(data)
    assert report == BounceReport((BouncedRecipient("jürgen@example.de", True, None, "5.1.1"),))


def test_successful_delivery_report_is_not_a_bounce() -> None:
    data = _dsn("Final-Recipient: rfc822; fine@example.com\nAction: relayed\nStatus: 2.0.0")
    assert _parse(data) is None


def test_unreadable_failure_report_is_still_a_bounce() -> None:
    """Nobody is scored, but the caller knows not to post the report to the forum."""
    data = _dsn("Final-Recipient: rfc822; not an address\nAction: failed\nStatus: 5.1.1")
    assert _parse(data) == BounceReport(())


@pytest.mark.parametrize(
    ("status", "policy_rejection"),
    [("5.7.1", True), ("4.7.0", True), ("5.1.1", False), ("4.2.2", False), (None, False)],
)
def test_policy_statuses_are_distinguished(status: str | None, policy_rejection: bool) -> None:
    assert BouncedRecipient("a@example.com", True, "failed", status).policy is policy_rejection


def test_dmarc_rejection_is_reported_as_policy() -> None:
    data = _dsn("Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.7.26")
    report = _parse(data)
    assert report is not None and report.recipients[0].policy


def test_plain_text_fallback_pairs_each_address_with_its_error() -> None:
    data = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
        b"To: list-bounces@lists.example.org\nSubject: Mail delivery failed\n\n"
        b"The following address(es) failed:\n\n"
        b"  one@example.com\n    host mx.example.com: 550 5.1.1 <one@example.com>... unknown\n"
        b"  two@example.com\n    host mx.example.com: 452 4.2.2 mailbox full\n\n"
        b"------ This is a copy of the message, including all the headers. ------\n\n"
        b"Return-path: <list-bounces@lists.example.org>\nTo: three@example.com\n\nhi\n"
    )
    report = _parse(data)
    assert report is not None
    assert {(r.address, r.permanent, r.status) for r in report.recipients} == {
        ("one@example.com", True, "5.1.1"),
        ("two@example.com", False, "4.2.2"),
    }


@pytest.mark.parametrize("policy_name", POLICIES)
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            b"From: alice@example.com\nTo: list@example.org\nSubject: hi\n\nHello\n", id="ordinary"
        ),
        pytest.param(
            b"From: Alice <alice@example.com>\nAuto-Submitted: auto-replied\n"
            b"Subject: Out of office\n\n"
            b"I am away until Monday; for urgent matters write to bob@example.com.\n",
            id="vacation",
        ),
        # flufl.bounce's Yale detector raises IndexError on a single-part message without From.
        pytest.param(b"Subject: no sender\n\nbody\n", id="no-from"),
        # compat32 returns an email.header.Header for 8-bit headers; detectors call .lower().
        pytest.param(
            "From: J\u00fcrgen <j@example.de>\nSubject: x\n\nbody\n".encode(), id="8bit-from"
        ),
        pytest.param(
            b"From: a@example.com\nContent-Type: text/plain; charset*=utf-8''x\n\n\xff\xfe body\n",
            id="rfc2231-charset",
        ),
        pytest.param(
            b'From: a@example.com\nContent-Type: text/plain; charset="ut\x00f"\n\n\xff body\n',
            id="nul-in-charset",
        ),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\xff\xfe garbage\n\n\n--", id="garbage"),
    ],
)
def test_non_bounces_and_broken_input_return_none(data: bytes, policy_name: str) -> None:
    assert _parse(data, policy_name) is None


QUOTED_BOUNCE = (
    b"From: Carol Cole <carol@example.com>\nTo: living-with-als@lists.example.org\n"
    b"Subject: Re: my post bounced?\n\nYahoo sent me this, does anyone know why?\n\n"
    b"> Sorry, we wasn't able to deliver the following message.\n"
    b"> To: bob@example.net\n"
    b"> ---Below this line is a copy of the message.\n"
)


@pytest.mark.parametrize("policy_name", POLICIES)
def test_a_person_quoting_a_bounce_is_not_a_bounce(policy_name: str) -> None:
    """flufl.bounce's detectors match quoted prose too: only machine-made mail reaches them."""
    assert _parse(QUOTED_BOUNCE, policy_name) is None


@pytest.mark.parametrize(
    ("change", "envelope_sender"),
    [
        pytest.param(
            (b"Carol Cole <carol@", b"MAILER-DAEMON <mailer-daemon@"), None, id="mailer-daemon"
        ),
        pytest.param(
            (b"Subject:", b"Auto-Submitted: auto-generated\nSubject:"), None, id="auto-generated"
        ),
        pytest.param((b"Subject:", b"Return-Path: <>\nSubject:"), None, id="return-path"),
        pytest.param((b"", b""), "", id="null-envelope-sender"),
    ],
)
def test_the_same_words_from_a_mail_system_are_a_bounce(
    change: tuple[bytes, bytes], envelope_sender: str | None
) -> None:
    data = QUOTED_BOUNCE.replace(b"> ", b"").replace(*change)
    message = email.message_from_bytes(data, policy=policy.compat32)
    report = parse_bounce(message, envelope_sender)
    assert report is not None
    assert [r.address for r in report.recipients] == ["bob@example.net"]


@pytest.mark.parametrize("policy_name", POLICIES)
def test_broken_multipart_report_does_not_raise(policy_name: str) -> None:
    data = (
        b"From: MAILER-DAEMON@mx.example.net\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/report; report-type=delivery-status;\n\tbo\n"
        b"Date: Sat, 26 Oct 2002\n2:00:26 +0900\n\n"
        b"--X\n\nR\xe9sum\xe9: <a@example.com> 550 5.1.1 unknown\n--X--\n"
    )
    assert isinstance(_parse(data, policy_name), BounceReport | None)


# --- scores ---------------------------------------------------------------------------------

D0 = date(2024, 3, 1)
NONE = BounceScore(0.0, None)


@pytest.mark.parametrize(
    ("current", "permanent", "today", "expected"),
    [
        pytest.param(NONE, True, D0, BounceScore(1.0, D0), id="first-permanent"),
        pytest.param(NONE, False, D0, BounceScore(0.5, D0), id="first-temporary"),
        pytest.param(BounceScore(1.0, D0), True, D0, BounceScore(1.0, D0), id="same-day-permanent"),
        pytest.param(
            BounceScore(0.5, D0), False, D0, BounceScore(0.5, D0), id="same-day-temporary"
        ),
        pytest.param(
            BounceScore(0.5, D0), True, D0, BounceScore(0.5, D0), id="same-day-any-kind-counts-once"
        ),
        pytest.param(
            BounceScore(1.0, D0),
            True,
            date(2024, 3, 2),
            BounceScore(2.0, date(2024, 3, 2)),
            id="next-day-adds",
        ),
        pytest.param(
            BounceScore(2.0, D0),
            False,
            date(2024, 3, 8),
            BounceScore(2.5, date(2024, 3, 8)),
            id="exactly-decay-days-keeps",
        ),
        pytest.param(
            BounceScore(4.0, D0),
            True,
            date(2024, 3, 9),
            BounceScore(1.0, date(2024, 3, 9)),
            id="after-decay-restarts",
        ),
        pytest.param(
            BounceScore(3.0, date(2024, 3, 5)),
            True,
            D0,
            BounceScore(3.0, date(2024, 3, 5)),
            id="clock-went-back",
        ),
    ],
)
def test_add_bounce(
    current: BounceScore, permanent: bool, today: date, expected: BounceScore
) -> None:
    assert add_bounce(current, permanent=permanent, today=today) == expected


@pytest.mark.parametrize(("decay_days", "expected_score"), [(0, 1.0), (1, 2.0), (30, 2.0)])
def test_decay_days_is_configurable(decay_days: int, expected_score: float) -> None:
    score = add_bounce(
        BounceScore(1.0, D0), permanent=True, today=date(2024, 3, 2), decay_days=decay_days
    )
    assert score.score == expected_score


def test_negative_decay_days_is_rejected() -> None:
    with pytest.raises(ValueError):
        add_bounce(NONE, permanent=True, today=D0, decay_days=-1)


def test_five_daily_permanent_bounces_disable() -> None:
    score = NONE
    for day in range(1, 6):
        assert not should_disable(score)
        score = add_bounce(score, permanent=True, today=date(2024, 3, day))
    assert score == BounceScore(5.0, date(2024, 3, 5))
    assert should_disable(score)


@pytest.mark.parametrize(
    ("score", "threshold", "expected"),
    [(4.5, 5.0, False), (5.0, 5.0, True), (7.0, 5.0, True), (2.0, 2.0, True), (0.0, 0.5, False)],
)
def test_should_disable(score: float, threshold: float, expected: bool) -> None:
    assert should_disable(BounceScore(score, D0), threshold) is expected


@pytest.mark.parametrize(
    ("status", "policy_rejection"),
    [
        ("5.7.1", True),  # refused as spam, DMARC, a blocklist
        ("4.7.0", True),  # greylisted, rate limited for reputation
        ("5.7.26 Unauthenticated email from example.org is not accepted", True),
        ("5.1.1", False),  # no such mailbox: a real bounce
        ("4.2.2", False),  # mailbox full
        ("2.7.0", False),  # a success, whatever its subject
        ("5.17.1", False),
        ("", False),
        (None, False),
    ],
)
def test_policy_rejections_are_one_rule_for_dsns_scores_and_the_report(
    status: str | None, policy_rejection: bool
) -> None:
    """The DSN reader, the bounce score and the owners' report ask the same rule."""
    assert is_policy_rejection(status) is policy_rejection
    assert BouncedRecipient("bob@example.net", True, "failed", status).policy is policy_rejection
    if status and status[0] in "45":
        code = 550 if status[0] == "5" else 450
        expected = "policy" if policy_rejection else ("hard" if code == 550 else "soft")
        assert failure_kind(code, status, final=True) == expected
