"""The pure parts of membership: tokens, command parsing and notice composition."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta

import pytest

from listserv.core import commands, notices, tokens, unsubscribe
from listserv.core.commands import Command, Moderation

SECRET = b"k" * 32
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
BINDING = "list@lists.example.org frank@example.net"


def test_token_round_trip_fits_an_address_local_part() -> None:
    token = tokens.issue(SECRET, "j", 42, BINDING, NOW, timedelta(days=7))
    assert token == token.lower() and len(token) < 40
    verified = tokens.verify(SECRET, token.upper(), BINDING, NOW + timedelta(days=6))
    assert (verified.kind, verified.ident) == ("j", 42)
    assert tokens.peek(token) == verified


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"), "not valid"),  # signature
        (lambda t: t.replace("j-42-", "j-43-"), "not valid"),  # another row
        (lambda t: t.replace("j-", "l-", 1), "not valid"),  # another purpose
        (lambda t: "x" + t, "not a token"),
        (lambda t: "", "not a token"),
    ],
)
def test_altered_tokens_are_refused(change: object, why: str) -> None:
    token = tokens.issue(SECRET, "j", 42, BINDING, NOW, timedelta(days=7))
    with pytest.raises(tokens.TokenError, match=why):
        tokens.verify(SECRET, change(token), BINDING, NOW)  # type: ignore[operator]


def test_token_is_bound_to_secret_address_and_time() -> None:
    token = tokens.issue(SECRET, "j", 42, BINDING, NOW, timedelta(days=7))
    with pytest.raises(tokens.TokenError, match="not valid"):
        tokens.verify(b"other", token, BINDING, NOW)
    with pytest.raises(tokens.TokenError, match="not valid"):
        tokens.verify(SECRET, token, "list@lists.example.org mallory@example.com", NOW)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(SECRET, token, BINDING, NOW + timedelta(days=7, seconds=1))
    forever = tokens.issue(SECRET, "u", 7, BINDING, NOW, None)
    assert tokens.verify(SECRET, forever, BINDING, NOW + timedelta(days=3650)).expires == 0


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("subscribe", "", [Command("subscribe")]),
        ("Re: Confirm your subscription", "confirm j-1-abc-defghijklmnopqrs",
         [Command("confirm", "j-1-abc-defghijklmnopqrs")]),
        ("", "Digest ON\nnomail off\n\nthanks", [Command("digest", "on"),
                                                Command("nomail", "off")]),
        ("help", "help", [Command("help")]),
        ("Fwd: join", "", [Command("subscribe")]),
        ("export", "", [Command("export")]),
        ("", "Forget\n", [Command("forget")]),
        ("", "forget me please", []),
        ("", "unsubscribe me please", []),
        ("", "digest sometimes", []),
        ("", "> subscribe\n", []),
        ("Hello", "I would like to know more.\nsubscribe", []),
        ("", "-- \nsubscribe", []),
    ],
)
def test_request_commands(subject: str, body: str, expected: list[Command]) -> None:
    assert commands.parse(subject, body) == expected


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Re: Held for moderation: x", "approve\n> quoted", Moderation("approve")),
        ("Re: x", "Reject: off topic, sorry\n", Moderation("reject", "off topic, sorry")),
        ("Re: x", "Discard.", Moderation("discard")),
        ("approve", "", Moderation("approve")),
        ("Re: x", "What is this?\n> approve", None),
        ("Re: x", "From: list\nSent: today\n    approve    deliver it", None),
    ],
)
def test_moderation_replies(subject: str, body: str, expected: Moderation | None) -> None:
    assert commands.parse_moderation(subject, body) == expected


def test_notice_is_marked_automatic_and_header_safe() -> None:
    notice = notices.compose(
        rendered="Subject: Held: evil\r\nBcc: x@y\n\nBody é\n", template_name="t.txt",
        from_name="Living with ALS", from_address="l-request@lists.example.org",
        envelope_sender="l-bounces@lists.example.org", recipient="a@example.org",
        list_id="l.lists.example.org", loop_value="l@lists.example.org",
        message_id="1@lists.example.org", now=NOW, in_reply_to="q@x",
    )
    msg = email.message_from_bytes(notice.payload)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<q@x>"
    assert msg["Bcc"] is None  # the rest of a broken subject line never becomes a header
    assert msg["Subject"] == "Held: evil"
    assert msg.get_payload(decode=True).decode("utf-8").startswith("Bcc: x@y\r\n")
    with pytest.raises(notices.TemplateFormatError, match="Subject"):
        notices.compose(rendered="no subject line\n\nbody", template_name="t.txt",
                        from_name="", from_address="a@b.org", envelope_sender="",
                        recipient="a@b.org", list_id="x", loop_value="x", message_id="1@x",
                        now=NOW)


def test_personal_unsubscribe_replaces_only_the_generic_header() -> None:
    message = (b"Subject: x\r\nList-Unsubscribe:\r\n <mailto:a-list-leave@lists.example.org>\r\n"
               b"X-Other: y\r\n\r\nList-Unsubscribe: <mailto:a-list-leave@lists.example.org>\r\n")
    out = unsubscribe.personalize(message, SECRET, 5, "bo@example.net", NOW)
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"List-Unsubscribe: <mailto:a-list-leave@lists.example.org>\r\n"
    local = head.split(b"<mailto:")[1].split(b"@")[0].decode()
    token = local.partition("+")[2]
    binding = "a-list@lists.example.org bo@example.net"
    assert tokens.verify(SECRET, token, binding, NOW).ident == 5
    assert unsubscribe.personalize(message, SECRET, None, "bo@example.net", NOW) == message
