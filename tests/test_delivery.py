"""Delivery that survives faults: retries, per-recipient outcomes, bounces, order per thread.

The relay is the scripted sink; time moves by the injected clock, never by sleeping.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy import select

from listserv.app import environment
from listserv.config import Config
from listserv.core.addresses import route
from listserv.core.verp import decode, encode
from listserv.outbound.leases import provably_dead
from listserv.outbound.outbox import Outbox
from listserv.outbound.transports import SmtpRelay, mail_parameters
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Bounce, Delivery, Member, Post
from listserv.store.settings import token_secret

from .conftest import LIST, Clock, LoopThread, Sink, count, make_message
from .test_serve import wait_for

pytestmark = pytest.mark.both_databases

BOB = "bob@example.net"
FRANK = "frank@example.org"
PLAIN = "living-with-als-bounces@lists.example.org"
# The VERP form anyone can type, without the HMAC our copies carry.
BOB_UNSIGNED = "living-with-als-bounces+bob=example.net@lists.example.org"


def statuses(db: Database) -> dict[str, str]:
    with db.session() as s:
        return dict(s.execute(select(Delivery.recipient, Delivery.status)).all())


def member(db: Database, address: str) -> Member:
    with db.session() as s:
        found = s.scalar(select(Member).where(Member.address == address))
        assert found is not None
        return found


def dsn(recipient: str, status: str = "5.1.1", action: str = "failed",
        returned: str = "") -> bytes:
    """A minimal RFC 3464 report, as an MTA sends it to the envelope sender; `returned` is
    the envelope sender of the copy it returns the headers of (Return-Path)."""
    r, s, a = recipient, status, action
    headers = (
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{returned}>\r\nFrom: {LIST}\r\nTo: {r}\r\nSubject: Hi\r\n\r\n"
    ) if returned else ""
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: list-bounces@lists.example.org\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{r}-{s}@mx>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {r}\r\nAction: {a}\r\nStatus: {s}\r\n\r\n"
        f"{headers}--B--\r\n"
    ).encode()


def verp_of(post: Any, drain: Any, sink: Sink, address: str) -> str:
    """The envelope sender of the copy of a new post the relay got for `address` (what a
    bounce of it comes back to); the sink is left empty."""
    msg = make_message("alice@example.org", "Hi", "hello", message_id=f"{uuid.uuid4()}@x")
    assert post(msg).code == 250
    drain()
    (sender,) = [r.mail_from for r in sink.received if address in r.rcpt_tos]
    sink.received.clear()
    return sender


def test_relay_451_then_250_is_delivered_on_retry(als: str, post: Any, drain: Any, sink: Sink,
                                                  clock: Clock, db: Database) -> None:
    sink.data_replies = ["451 4.3.0 try later"]
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="h@x")).code == 250
    drain()
    assert sorted(statuses(db).values()) == ["deferred", "sent"]
    clock.advance(seconds=30)
    assert drain() == 0  # not yet due: the first retry comes after about a minute
    clock.advance(seconds=60)
    drain()
    assert set(statuses(db).values()) == {"sent"}
    assert sorted(sink.recipients()) == [BOB, "dave@example.org"]


def test_550_for_one_recipient_bounces_only_that_member(als: str, post: Any, drain: Any,
                                                        sink: Sink, db: Database) -> None:
    sink.rcpt_replies[BOB] = "550 5.1.1 no such user"
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="h@x")).code == 250
    drain()
    assert statuses(db) == {BOB: "failed", "dave@example.org": "sent"}
    assert member(db, BOB).bounce_score == 1.0
    with db.session() as s:
        bounce = s.scalar(select(Bounce))
        assert (bounce.address, bounce.source, bounce.status, bounce.permanent) == (
            BOB, "relay", "5.1.1", True)


def test_every_post_copy_has_its_members_signed_verp_sender(
        als: str, post: Any, drain: Any, sink: Sink, db: Database, config: Any) -> None:
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="h@x")).code == 250
    drain()
    with db.session() as s:
        secret = token_secret(s, config)
    assert sorted((r.rcpt_tos[0], r.mail_from) for r in sink.received) == [
        (BOB, encode(PLAIN, BOB, secret)), ("dave@example.org", encode(PLAIN, "dave@example.org",
                                                                      secret))]
    bob_verp = encode(PLAIN, BOB, secret)
    assert bob_verp.startswith("living-with-als-bounces+bob=example.net=")
    assert len(bob_verp.partition("@")[0]) <= 64  # RFC 5321's limit for a local part


def test_temporary_failures_become_a_bounce_after_the_maximum_age(
        config_data: dict[str, Any], als: str, post: Any, drain: Any, sink: Sink,
        clock: Clock, db: Database) -> None:
    sink.rcpt_replies[BOB] = "452 4.2.2 mailbox full"
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="h@x")).code == 250
    for _ in range(10):  # ten hourly-ish retries of a 5-day window: still deferred
        drain()
        clock.advance(hours=2)
    assert statuses(db)[BOB] == "deferred"
    assert member(db, BOB).bounce_score == 0
    clock.advance(days=5)
    drain()
    assert statuses(db)[BOB] == "failed"
    assert member(db, BOB).bounce_score == 1.0


def test_a_list_with_a_short_maximum_retry_age_gives_up_sooner_than_the_default(
        als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock,
        db: Database) -> None:
    caregivers = "caregivers@lists.example.org"
    assert cli("lists", "create", "caregivers", "--title", "Caregivers").exit_code == 0
    for address in ("alice@example.org", FRANK):
        assert cli("members", "add", caregivers, address).exit_code == 0
    assert cli("lists", "set", LIST, "--max-retry-hours", "6").exit_code == 0
    # Bob's and Frank's mailboxes are full: their relays answer 4xx for days.
    sink.rcpt_replies[BOB] = sink.rcpt_replies[FRANK] = "452 4.2.2 mailbox full"
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="a@x")).code == 250
    assert post(make_message("alice@example.org", "Hi", "hello", to=caregivers,
                             message_id="c@x"), to=[caregivers]).code == 250
    drain()
    clock.advance(hours=5)
    drain()
    assert (statuses(db)[BOB], statuses(db)[FRANK]) == ("deferred", "deferred")
    # Past the six hours of living-with-als, but far within the default five days.
    clock.advance(hours=2)
    drain()
    assert (statuses(db)[BOB], statuses(db)[FRANK]) == ("failed", "deferred")
    assert member(db, BOB).bounce_score == 1.0
    assert member(db, FRANK).bounce_score == 0
    clock.advance(days=5)
    drain()
    assert statuses(db)[FRANK] == "failed"


def test_relay_down_then_back_delivers_everything_in_thread_order(
        als: str, post: Any, drain: Any, sink: Sink, clock: Clock, db: Database) -> None:
    sink.down = True
    question = make_message("alice@example.org", "Massage?", "Does it help?", message_id="q@x")
    answer = make_message("dave@example.org", "Re: Massage?", "Yes.", message_id="a@x",
                          in_reply_to="q@x")
    assert post(question).code == 250
    assert post(answer).code == 250
    drain()
    assert sink.received == []
    with db.session() as s:
        errors = s.scalars(select(Delivery.last_error).where(Delivery.attempts > 0)).all()
    assert errors and all(e.startswith("451 relay 127.0.0.1") for e in errors)
    for _ in range(3):  # down for a while: more retries, later and later
        clock.advance(minutes=10)
        drain()
    sink.down = False
    clock.advance(hours=1)
    drain()
    assert set(statuses(db).values()) == {"sent"}
    assert [m["Message-ID"] for m in sink.to(BOB)] == ["<q@x>", "<a@x>"]
    assert [m["Message-ID"] for m in sink.to("alice@example.org")] == ["<a@x>"]
    assert [m["Message-ID"] for m in sink.to("dave@example.org")] == ["<q@x>"]


def copies_to(db: Database, address: str) -> list[tuple[str, str, int]]:
    """(Message-ID, status, attempts) of each post copy queued for `address`, oldest first."""
    with db.session() as s:
        return [tuple(row) for row in s.execute(
            select(Post.message_id, Delivery.status, Delivery.attempts)
            .join(Post, Post.id == Delivery.post_id)
            .where(Delivery.recipient == address).order_by(Delivery.id))]


def test_a_new_posts_copies_are_claimed_as_they_are_queued_behind_a_members_older_copy(
        als: str, post: Any, drain: Any, sink: Sink, clock: Clock, outbox: Outbox,
        db: Database) -> None:
    sink.rcpt_replies[BOB] = "451 4.7.1 greylisted"
    assert post(make_message("alice@example.org", "Massage?", "Does it help?",
                             message_id="q1@x")).code == 250
    drain()
    assert copies_to(db, BOB) == [("q1@x", "deferred", 1)]
    del sink.rcpt_replies[BOB]
    assert post(make_message("alice@example.org", "Re: Massage?", "Anyone?", message_id="q2@x",
                             in_reply_to="q1@x")).code == 250
    assert post(make_message("dave@example.org", "Re: Massage?", "Yes.", message_id="q3@x",
                             in_reply_to="q2@x")).code == 250
    # One step queues both posts' copies and leases the ones due: Dave's and Alice's.
    # Bob's wait behind his first copy, which the relay deferred.
    expanded, claims = outbox.expand_and_claim(500)
    assert expanded
    assert sorted(c.recipient for c in claims) == ["alice@example.org", "dave@example.org"]
    assert copies_to(db, BOB) == [("q1@x", "deferred", 1), ("q2@x", "queued", 0),
                                  ("q3@x", "queued", 0)]
    assert outbox.claim(500) == []  # leased already, and Bob's not due
    clock.advance(minutes=2)  # Bob's retry is due: his three copies are claimed together
    assert [c.recipient for c in outbox.claim(500)] == [BOB, BOB, BOB]
    outbox.release()
    drain()
    assert [m["Message-ID"] for m in sink.to(BOB)] == ["<q1@x>", "<q2@x>", "<q3@x>"]
    assert [m["Message-ID"] for m in sink.to("dave@example.org")] == ["<q1@x>", "<q2@x>"]


def test_a_members_later_copies_wait_while_the_relay_defers_an_earlier_one(
        als: str, post: Any, drain: Any, sink: Sink, clock: Clock, db: Database) -> None:
    """Three posts reach the outbox together; the relay turns Bob's first copy away for
    now. His later two are not sent meanwhile, nor counted as tries: they follow it."""
    refused: list[str] = []
    accept = sink.handle_RCPT

    async def greylist_once(server: SMTP, session: SMTPSession, envelope: Envelope,
                            address: str, options: list[str]) -> str:
        if address == BOB and not refused:
            refused.append(address)
            return "451 4.7.1 greylisted, try again later"
        return await accept(server, session, envelope, address, options)

    sink.handle_RCPT = greylist_once  # type: ignore[method-assign]
    for n, reply_to in ((1, None), (2, "q1@x"), (3, "q2@x")):
        assert post(make_message("alice@example.org", "Re: Massage?" if reply_to else "Massage?",
                                 f"Post {n}.", message_id=f"q{n}@x",
                                 in_reply_to=reply_to)).code == 250
    drain()
    assert [m["Message-ID"] for m in sink.to("dave@example.org")] == [
        "<q1@x>", "<q2@x>", "<q3@x>"]
    assert sink.to(BOB) == []
    assert copies_to(db, BOB) == [("q1@x", "deferred", 1), ("q2@x", "queued", 0),
                                  ("q3@x", "queued", 0)]
    clock.advance(minutes=2)
    drain()
    assert [m["Message-ID"] for m in sink.to(BOB)] == ["<q1@x>", "<q2@x>", "<q3@x>"]
    assert copies_to(db, BOB) == [("q1@x", "sent", 1), ("q2@x", "sent", 0),
                                  ("q3@x", "sent", 0)]


def test_outbox_lists_deferred_with_next_attempt_and_retry_sends_now(
        als: str, post: Any, drain: Any, sink: Sink, cli: Any, db: Database) -> None:
    sink.rcpt_replies[BOB] = "451 4.4.1 greylisted"
    sink.rcpt_replies["dave@example.org"] = "550 5.1.1 gone"
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="h@x")).code == 250
    drain()
    result = cli("outbox", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["recipient"]: r for r in json.loads(result.output)}
    assert rows[BOB]["status"] == "deferred"
    assert rows[BOB]["last_error"] == "451 4.4.1 greylisted"
    assert rows[BOB]["next_attempt"] is not None
    assert (rows["dave@example.org"]["status"], rows["dave@example.org"]["next_attempt"]) == (
        "failed", None)
    table = cli("outbox", "--status", "deferred")
    assert BOB in table.output and "dave@" not in table.output

    del sink.rcpt_replies[BOB]
    assert drain() == 0  # not due yet
    assert cli("outbox", "retry", str(rows[BOB]["id"])).output.strip() == "1 deliveries due now"
    drain()
    assert statuses(db)[BOB] == "sent"
    assert cli("outbox", "retry", "--all").output.strip() == "1 deliveries due now"
    assert statuses(db)["dave@example.org"] == "deferred"


def test_outbox_retry_needs_ids_or_all(cli: Any, db: Database) -> None:
    result = cli("outbox", "retry")
    assert result.exit_code != 0
    assert result.output.strip() == "Error: give delivery IDs or --all (not both)"
    missing = cli("outbox", "retry", "99")
    assert missing.exit_code != 0
    assert "0 of 1 retried" in missing.output


@pytest.fixture
def owner_notified(config_data: dict[str, Any]) -> None:
    config_data["bounces"] = {"threshold": 3.0, "owners": "owner@example.org"}


def test_verp_bounces_disable_a_member_who_is_told_once_and_can_be_enabled(
        owner_notified: None, als: str, post: Any, drain: Any, sink: Sink, clock: Clock,
        cli: Any, db: Database) -> None:
    bob_verp = verp_of(post, drain, sink, BOB)
    for day in range(3):
        reply = post(dsn(BOB), to=[bob_verp], sender="")
        assert reply.code == 250
        again = post(dsn(BOB, "5.2.1"), to=[bob_verp], sender="")  # same day: counts once
        assert again.code == 250
        assert member(db, BOB).bounce_score == day + 1
        clock.advance(days=1)
    assert member(db, BOB).disabled_at is not None
    assert count(db, Post) == 1  # the post of bob's copy; no bounce is ever posted
    drain()
    (told,) = sink.to(BOB)
    assert told["Subject"] == "Your messages from Living with ALS are paused"
    assert told["Auto-Submitted"] == "auto-generated"
    (owner,) = sink.to("owner@example.org")
    assert "bob@example.net" in owner["Subject"]

    # The notice bounces too: recorded, not counted, nobody is told again.
    assert post(dsn(BOB), to=[bob_verp], sender="").code == 250
    clock.advance(days=1)
    assert post(dsn(BOB), to=["living-with-als-bounces@lists.example.org"], sender="").code == 250
    drain()
    assert len(sink.to(BOB)) == 1 and len(sink.to("owner@example.org")) == 1
    assert member(db, BOB).bounce_score == 3.0

    listing = json.loads(cli("members", "list", LIST, "--bouncing", "--json").output)
    assert [(r["address"], r["score"], r["delivery"]) for r in listing] == [
        (BOB, 3.0, "disabled")]
    sink.received.clear()
    assert post(make_message("alice@example.org", "Hi", "x", message_id="p1@x")).code == 250
    drain()
    assert sink.recipients() == ["dave@example.org"]

    result = cli("members", "set", LIST, BOB, "--enable")
    assert result.exit_code == 0 and "delivery=enabled" in result.output
    assert cli("members", "list", LIST, "--bouncing").output.strip() == "(none)"
    assert post(make_message("alice@example.org", "Hi", "x", message_id="p2@x")).code == 250
    drain()
    assert sorted(sink.recipients()) == [BOB, "dave@example.org", "dave@example.org"]


def test_dsn_at_plain_bounce_address_scores_a_member_only_with_their_returned_copy(
        als: str, post: Any, drain: Any, sink: Sink, clock: Clock, db: Database) -> None:
    dave_verp = verp_of(post, drain, sink, "dave@example.org")
    # A report that names dave proves nothing by itself: anyone can write one.
    for _ in range(5):
        assert post(dsn("dave@example.org"), to=[PLAIN], sender="").code == 250
        clock.advance(days=1)
    assert member(db, "dave@example.org").bounce_score == 0
    # One that returns the headers of dave's copy, with its signed VERP Return-Path, counts.
    real = dsn("Dave@example.org", returned=dave_verp)
    assert post(real, to=[PLAIN], sender="").code == 250
    assert member(db, "dave@example.org").bounce_score == 1.0
    again = dsn("dave@example.org", "4.2.2", "delayed", returned=dave_verp)
    assert post(again, to=[PLAIN], sender="").code == 250
    assert member(db, "dave@example.org").bounce_score == 1.0  # same day
    assert post(dsn("stranger@example.org", returned=dave_verp), to=[PLAIN],
                sender="").code == 250
    assert count(db, Bounce) == 2
    assert count(db, Post) == 1  # the post of dave's copy only


def test_forged_verp_bounces_score_nobody(als: str, post: Any, drain: Any, sink: Sink,
                                          clock: Clock, db: Database) -> None:
    """Five emails over five days used to disable anyone: the VERP address can be typed."""
    bob_verp = verp_of(post, drain, sink, BOB)
    dave_verp = verp_of(post, drain, sink, "dave@example.org")
    local, _, domain = bob_verp.partition("@")
    made_up = f"{local[:-8]}{'a' * 8}@{domain}"  # bob's VERP with a guessed HMAC
    for _ in range(5):
        # A report naming bob, at the VERP address without (or with a wrong) HMAC.
        assert post(dsn(BOB), to=[BOB_UNSIGNED, made_up], sender="").code == 250
        # Any text at bob's real VERP address: not a delivery report.
        words = make_message("mallory@example.com", "hi", "bob's mail bounces, honest",
                             message_id=f"m{clock().day}@x")
        assert post(words, to=[bob_verp], sender="").code == 250
        # A report about someone else, at bob's address.
        assert post(dsn("dave@example.org"), to=[bob_verp], sender="").code == 250
        # A report naming bob, at dave's address.
        assert post(dsn(BOB), to=[dave_verp], sender="").code == 250
        clock.advance(days=1)
    assert member(db, BOB).bounce_score == 0 and member(db, BOB).disabled_at is None
    assert member(db, "dave@example.org").bounce_score == 0
    assert count(db, Bounce) == 0
    assert count(db, Post) == 2  # the posts of bob's and dave's copies only
    # A real report at bob's address counts, as before.
    assert post(dsn(BOB), to=[bob_verp], sender="").code == 250
    assert member(db, BOB).bounce_score == 1.0


def test_policy_rejections_are_recorded_but_not_counted(als: str, post: Any, drain: Any,
                                                        sink: Sink, db: Database) -> None:
    bob_verp = verp_of(post, drain, sink, BOB)
    assert post(dsn(BOB, "5.7.1"), to=[bob_verp], sender="").code == 250
    assert member(db, BOB).bounce_score == 0
    with db.session() as s:
        assert s.scalar(select(Bounce.counted)) is False


def test_not_a_report_at_plain_bounce_address_is_ignored(als: str, post: Any,
                                                         db: Database) -> None:
    hello = make_message("alice@example.org", "hello", "just saying hi", message_id="hi@x")
    assert post(hello, to=["living-with-als-bounces@lists.example.org"]).code == 250
    assert count(db, Bounce) == 0
    assert count(db, Post) == 0


def test_display_name_that_looks_like_an_address_does_not_spoof_the_author(
        als: str, post: Any, db: Database) -> None:
    raw = (b"From: alice@example.org <mallory@example.com>\r\nTo: " + LIST.encode()
           + b"\r\nSubject: me\r\nMessage-ID: <spoof@x>\r\n\r\nhi\r\n")
    assert post(raw, sender="mallory@example.com").code == 250
    assert count(db, Post) == 0  # held: not a member


@pytest.fixture
def impatient(config_data: dict[str, Any]) -> None:
    config_data["delivery"]["timeout"] = 0.3


@pytest.mark.parametrize("fault", ["421 at MAIL", "dropped after DATA", "timeout at DATA"])
def test_temporary_relay_faults_at_every_stage_are_retried(
        impatient: None, als: str, post: Any, drain: Any, sink: Sink, clock: Clock,
        db: Database, fault: str) -> None:
    if fault == "421 at MAIL":
        sink.mail_replies = ["421 4.3.2 shutting down"] * 2
    elif fault == "dropped after DATA":
        sink.drop_after_data = 2
    else:
        sink.data_delay = 1.0
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="h@x")).code == 250
    drain()
    assert set(statuses(db).values()) == {"deferred"}
    sink.data_delay = 0.0
    clock.advance(minutes=2)
    drain()
    assert set(statuses(db).values()) == {"sent"}
    assert count(db, Bounce) == 0


def test_vacation_reply_to_a_verp_address_is_not_a_bounce(als: str, post: Any, drain: Any,
                                                          sink: Sink, db: Database) -> None:
    bob_verp = verp_of(post, drain, sink, BOB)
    away = make_message(BOB, "Out of office: To all", "I am away until Monday.",
                        message_id="away@x", headers={"Auto-Submitted": "auto-replied"})
    assert post(away, to=[bob_verp], sender="").code == 250
    assert count(db, Bounce) == 0
    assert count(db, Post) == 1
    # A non-standard bounce at the same address (qmail's prose, no DSN) still counts.
    gone = make_message(
        "MAILER-DAEMON@mx.example.net", "failure notice",
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{BOB}>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
        message_id="gone@x")
    assert post(gone, to=[bob_verp], sender="").code == 250
    assert member(db, BOB).bounce_score == 1.0


def test_a_reply_quoting_a_bounce_is_not_a_bounce(als: str, post: Any, drain: Any,
                                                   sink: Sink, db: Database) -> None:
    """flufl.bounce reads "To: bob@..." in a quoted bounce as a failed recipient: only mail
    that looks machine-made is given to its detectors."""
    bob_verp = verp_of(post, drain, sink, BOB)
    # Bob's mail program answers the envelope sender, and he quotes what his provider said.
    reply = make_message(
        BOB, "Re: failure notice",
        "Did my mail to the list get through? My provider said:\n\n"
        "> Sorry, we wasn't able to deliver the following message.\n"
        f"> Return-Path: <{bob_verp}>\n"
        f"> To: {BOB}\n"
        "> ---Below this line is a copy of the message.\n",
        message_id="quoted@x")
    assert post(reply, to=[bob_verp, PLAIN], sender=BOB).code == 250
    assert member(db, BOB).bounce_score == 0
    assert count(db, Bounce) == 0
    assert count(db, Post) == 1
    # The same words from a mail system are a bounce.
    bounce = make_message("MAILER-DAEMON@mx.example.net", "failure notice",
                          reply.get_content().replace("> ", ""), message_id="real@x")
    assert post(bounce, to=[bob_verp], sender="").code == 250
    assert member(db, BOB).bounce_score == 1.0


@pytest.mark.parametrize("recipient", ["bob@example.net", "Bob.Baker+lists@Example.NET",
                                       "a=b@example.org"])
def test_verp_round_trips_through_routing(recipient: str) -> None:
    secret = b"s" * 32
    sender = encode(PLAIN, recipient, secret)
    target = route(sender, {"lists.example.org"}, {LIST})
    assert (target.kind, target.role) == ("list", "bounces")
    decoded = decode(PLAIN, target.detail, secret)
    assert decoded is not None and decoded.lower() == recipient.lower()
    # Another secret, another list, another member or no HMAC: nobody.
    assert decode(PLAIN, target.detail, b"t" * 32) is None
    assert decode("caregivers-bounces@lists.example.org", target.detail, secret) is None
    other = encode(PLAIN, "x" + recipient, secret).partition("+")[2].rpartition("=")[2]
    assert decode(PLAIN, target.detail.rpartition("=")[0] + "=" + other.partition("@")[0],
                  secret) is None
    assert decode(PLAIN, target.detail.rpartition("=")[0], secret) is None


def test_the_relay_hears_each_recipient_and_its_own_answer(
    sink: Sink, loop_thread: LoopThread
) -> None:
    relay = SmtpRelay("127.0.0.1", sink.port, 1, 10.0)
    sink.rcpt_replies["gone@example.net"] = "550 5.1.1 no such user"
    sink.rcpt_replies["full@example.net"] = "452 4.2.2 mailbox full"
    message = make_message("alice@example.org", "Hello", "body").as_bytes()
    results = loop_thread.run(relay.send(
        "list-bounces@lists.example.org",
        ["bob@example.net", "gone@example.net", "full@example.net"], message))
    assert {r: res.code for r, res in results.items()} == {
        "bob@example.net": 250, "gone@example.net": 550, "full@example.net": 452}
    # Everyone refused: nothing is sent, and the connection serves the next message.
    refused = loop_thread.run(relay.send("list-bounces@lists.example.org",
                                         ["gone@example.net"], message))
    assert refused["gone@example.net"].code == 550
    assert loop_thread.run(relay.send("list-bounces@lists.example.org", ["bob@example.net"],
                                      message))["bob@example.net"].code == 250
    # An internationalized address goes out with SMTPUTF8 (RFC 6531).
    assert loop_thread.run(relay.send("list-bounces@lists.example.org", ["jürgen@bücher.de"],
                                      message))["jürgen@bücher.de"].code == 250
    loop_thread.run(relay.close())
    assert [r.rcpt_tos for r in sink.received] == [
        ["bob@example.net"], ["bob@example.net"], ["jürgen@bücher.de"]]


def test_a_post_in_any_script_reaches_a_strict_server_declared_as_8bit_and_utf8(
        config: Config, cli: Any, post: Any, receiver: Server, db: Database, clock: Clock,
        loop_thread: LoopThread) -> None:
    """Our own receiver refuses undeclared 8-bit data (RFC 6152), as strict servers do. A
    list address on it, subscribed to a list, accepts a German and Japanese post only when
    the outgoing MAIL FROM declares BODY=8BITMIME and, for the raw UTF-8 header, SMTPUTF8
    (there it is then dropped as list mail: a list never reposts another list's copy)."""
    archive = "als-archive@lists.example.org"
    assert cli("lists", "create", "living-with-als", "--title", "Living with ALS").exit_code == 0
    assert cli("lists", "create", "als-archive", "--title", "ALS archive").exit_code == 0
    assert cli("members", "add", LIST, "alice@example.org").exit_code == 0
    assert cli("members", "add", LIST, archive).exit_code == 0
    body = "Grüße aus Köln, und 東京からこんにちは。\n"
    raw = (f"From: Alice Archer <alice@example.org>\r\nTo: Lebende mit ALS <{LIST}>\r\n"
           "Subject: Treffen\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\n"
           "Message-ID: <treffen@example.org>\r\nMIME-Version: 1.0\r\n"
           "Keywords: Grüße, 東京\r\n"
           'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n'
           f"\r\n{body}").encode()
    assert post(raw, sender="alice@example.org").code == 250
    strict = SmtpRelay("127.0.0.1", receiver.port, 1, 10.0)
    outbox = Outbox(db, config, strict, environment(config.base_dir), clock, rng=lambda: 0.5)
    while loop_thread.run(outbox.run_once()):
        pass
    loop_thread.run(strict.close())
    with db.session() as s:
        delivery = s.scalar(select(Delivery).where(Delivery.recipient == archive))
        assert delivery is not None
        assert (delivery.status, delivery.last_error) == ("sent", None)


@pytest.mark.parametrize(("sender", "rcpt", "message", "needed"), [
    ("l-bounces@lists.example.org", "bob@example.net", b"Subject: hi\r\n\r\nhello\r\n", []),
    ("l-bounces@lists.example.org", "bob@example.net", "Subject: hi\r\n\r\nGrüße\r\n".encode(),
     ["BODY=8BITMIME"]),
    ("l-bounces@lists.example.org", "bob@example.net", "To: 東京\r\n\r\nhi\r\n".encode(),
     ["BODY=8BITMIME", "SMTPUTF8"]),
    ("l-bounces@lists.example.org", "jürgen@bücher.de", b"Subject: hi\r\n\r\nhello\r\n",
     ["SMTPUTF8"]),
])
def test_mail_from_declares_what_the_content_needs(sender: str, rcpt: str, message: bytes,
                                                   needed: list[str]) -> None:
    assert mail_parameters(sender, [rcpt], message) == needed


def test_a_restarted_dispatcher_resumes_its_crashed_incarnations_leases_at_once(
        als: str, post: Any, outbox: Outbox, config: Config, clock: Clock, sink: Sink,
        db: Database, loop_thread: LoopThread) -> None:
    """A dispatcher claims a post's copies with the default 300-second lease and dies
    without recording or releasing them; restarted in a process with the same id (pid 1 in
    a container does), it delivers them at once, while the clock stands still. Leases of a
    live dispatcher on this host, or of one on another host, are left alone."""
    assert post(make_message("alice@example.org", "Hi", "hello", message_id="h@x")).code == 250
    while outbox.expand_batch():
        pass
    assert sorted(c.recipient for c in outbox.claim(100)) == [BOB, "dave@example.org"]
    assert config.delivery.lease_seconds == 300
    with db.session() as s:  # two neighbours that are alive hold a copy each
        neighbours = {BOB: f"{socket.gethostname()[:40]}:{os.getppid()}:feedface0001",
                      "dave@example.org": "other-host:4242:feedface0002"}
        for delivery in s.scalars(select(Delivery)):
            if delivery.recipient in neighbours:
                delivery.lease_owner = neighbours[delivery.recipient]
    assert post(make_message("dave@example.org", "Re: Hi", "hello back", message_id="r@x",
                             in_reply_to="h@x")).code == 250
    while outbox.expand_batch():
        pass
    # Bob's second copy waits behind his first: the crashing dispatcher holds Alice's.
    assert [c.recipient for c in outbox.claim(100)] == ["alice@example.org"]
    restarted = Server(config, clock, roles=("dispatcher",))
    loop_thread.run(restarted.start())
    try:
        wait_for(lambda: "alice@example.org" in sink.recipients(), "the reclaimed copy")
    finally:
        loop_thread.run(restarted.stop())
    assert statuses(db) == {BOB: "queued", "dave@example.org": "queued",
                            "alice@example.org": "sent"}


@pytest.mark.parametrize(("owner", "dead"), [
    ("host:100:aaaa", False),   # ourselves
    ("host:100:bbbb", True),    # our pid, another start: we replaced it
    ("host:200:cccc", True),    # its process is gone
    ("host:300:dddd", False),   # alive
    ("elsewhere:200:eeee", False),  # another host: nothing can be proven
    ("0123456789abcdef", False),  # an owner id of an older version
])
def test_only_a_dispatcher_that_provably_ended_loses_its_leases(owner: str, dead: bool) -> None:
    assert provably_dead(owner, "host:100:aaaa", lambda pid: pid == 300) is dead
