"""Posting by email: a question, a reply, one thread, delivered to the members who want it."""

from __future__ import annotations

import json
from datetime import UTC
from email.utils import parseaddr
from typing import Any

import pytest
from sqlalchemy import select

from listserv.store.database import Database
from listserv.store.models import FanoutJob, Held, Post, Thread

from .conftest import LIST, Sink, count, is_held, make_message

pytestmark = pytest.mark.both_databases

QUESTION = ("Does massage therapy help to maintain overall function and muscle strength?")


def test_seed_thread_question_and_reply_reach_each_member(
    als: str, post: Any, drain: Any, sink: Sink, db: Database, cli: Any
) -> None:
    question = make_message("Alice Archer <alice@example.org>", "Massage therapy?", QUESTION,
                            message_id="q1@example.org")
    assert post(question).code == 250
    reply = make_message("Bob Baker <bob@example.net>",
                         "Re: [Living with ALS] Massage therapy?",
                         "Yes, twice a week helps me.\n\n> " + QUESTION,
                         message_id="r1@example.net", in_reply_to="q1@example.org",
                         references="<q1@example.org>")
    assert post(reply).code == 250
    drain()

    # Both posts are stored in one thread with one reply.
    listing = cli("threads", LIST, "--json")
    assert listing.exit_code == 0, listing.output
    import json

    (thread,) = json.loads(listing.output)
    assert thread["subject"] == "Massage therapy?"
    assert thread["replies"] == 1
    assert thread["participants"] == ["alice@example.org", "bob@example.net"]

    # Each-message members get what others wrote; never their own post.
    # (Two posts go out on parallel connections, so their order at the sink is not fixed.)
    assert sorted(m["Message-ID"] for m in sink.to("dave@example.org")) == [
        "<q1@example.org>", "<r1@example.net>"]
    assert [m["Message-ID"] for m in sink.to("alice@example.org")] == ["<r1@example.net>"]
    assert [m["Message-ID"] for m in sink.to("bob@example.net")] == ["<q1@example.org>"]
    # Digest and nomail members get nothing now.
    assert sink.to("carol@example.com") == []
    assert sink.to("erin@example.org") == []

    (delivered,) = [m for m in sink.to("dave@example.org")
                    if m["Message-ID"] == "<r1@example.net>"]
    assert delivered["In-Reply-To"] == "<q1@example.org>"
    assert delivered["References"] == "<q1@example.org>"
    assert delivered["Subject"] == "[Living with ALS] Re: Massage therapy?"
    assert delivered["List-Id"] == "Living with ALS <living-with-als.lists.example.org>"
    assert delivered["List-Post"] == f"<mailto:{LIST}>"
    # Each member's copy names their own leave token (one click removes them).
    assert delivered["List-Unsubscribe"].startswith("<mailto:living-with-als-leave+u-")
    assert delivered["Precedence"] == "list"
    assert delivered["X-BeenThere"] == LIST
    # DMARC-safe: the list's address in From, the author's name kept, replies go to the list,
    # tagged with the thread.
    assert parseaddr(str(delivered["From"])) == ("Bob Baker via Living with ALS", LIST)
    assert parseaddr(str(delivered["Reply-To"]))[1] == "living-with-als+t1@lists.example.org"
    body = delivered.get_content()
    assert body.startswith("Yes, twice a week helps me.")
    assert "To leave, write to living-with-als-leave@lists.example.org" in body
    # Bounces come back to the list's bounce address, not to the author, with the member
    # in the address (VERP, signed): one message per recipient.
    assert {(tuple(r.mail_from.split("=", 2)[:2]), tuple(r.rcpt_tos)) for r in sink.received} == {
        (("living-with-als-bounces+" + local, domain), (f"{local}@{domain}",))
        for local, domain in [("alice", "example.org"), ("bob", "example.net"),
                              ("dave", "example.org")]
    }


def test_subject_prefix_is_never_doubled(als: str, post: Any, drain: Any, sink: Sink) -> None:
    msg = make_message("alice@example.org", "Re: [Living with ALS] Re: [Living with ALS] Hi",
                       "hello", message_id="p@example.org")
    assert post(msg).code == 250
    drain()
    (delivered,) = sink.to("dave@example.org")
    assert delivered["Subject"] == "[Living with ALS] Re: Re: Hi"


def test_member_can_ask_for_own_posts(als: str, cli: Any, post: Any, drain: Any,
                                      sink: Sink) -> None:
    cli("members", "set", LIST, "alice@example.org", "--receive-own-posts")
    assert post(make_message("alice@example.org", "Mine", "x", message_id="m@x.org")).code == 250
    drain()
    assert len(sink.to("alice@example.org")) == 1


def test_html_and_attachments_are_delivered_intact(als: str, post: Any, drain: Any,
                                                   sink: Sink) -> None:
    msg = make_message("alice@example.org", "Photo", "See the photo.", message_id="ph@x.org")
    msg.add_alternative("<p>See the <b>photo</b>.</p>", subtype="html")
    msg.add_attachment(b"\x89PNG fake", maintype="image", subtype="png", filename="p.png")
    assert post(msg).code == 250
    drain()
    (delivered,) = sink.to("dave@example.org")
    attachments = list(delivered.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["p.png"]
    assert attachments[0].get_content() == b"\x89PNG fake"
    html = delivered.get_body(preferencelist=("html",))
    assert html is not None and "<b>photo</b>" in html.get_content()
    assert "To leave, write to" in delivered.as_string()


def test_message_without_message_id_gets_one(als: str, post: Any, db: Database,
                                             drain: Any, sink: Sink) -> None:
    raw = (b"From: alice@example.org\r\nTo: " + LIST.encode() +
           b"\r\nSubject: no id\r\n\r\nhello\r\n")
    assert post(raw, sender="alice@example.org").code == 250
    with db.session() as s:
        (stored,) = s.scalars(select(Post)).all()
    assert stored.message_id.endswith("@lists.example.org")
    drain()
    (delivered,) = sink.to("dave@example.org")
    assert delivered["Message-ID"] == f"<{stored.message_id}>"


def test_message_without_date_gets_the_time_we_received_it(
        als: str, post: Any, db: Database, drain: Any, sink: Sink, clock: Any) -> None:
    # RFC 5322 requires a Date; some scripts and gateways send none, and mail clients then
    # sort the copy as new whenever it is opened, or refuse it.
    raw = (b"From: alice@example.org\r\nTo: " + LIST.encode()
           + b"\r\nSubject: no date\r\nMessage-ID: <nodate@x.org>\r\n\r\nhello\r\n")
    assert post(raw, sender="alice@example.org").code == 250
    with db.session() as s:
        (stored,) = s.scalars(select(Post)).all()
    assert stored.date is not None
    assert (stored.date if stored.date.tzinfo else stored.date.replace(tzinfo=UTC)) == clock()
    drain()
    (delivered,) = sink.to("dave@example.org")
    assert delivered["Date"].datetime == clock()
    assert len(delivered.get_all("Date")) == 1


def test_duplicate_message_id_is_accepted_and_stored_once(
    als: str, post: Any, db: Database, drain: Any, sink: Sink
) -> None:
    msg = make_message("alice@example.org", "Twice", "sent twice", message_id="dup@x.org")
    assert post(msg).code == 250
    second = post(msg)
    assert second.code == 250
    assert "already" in second.text
    assert count(db, Post) == 1
    assert count(db, FanoutJob) == 1
    drain()
    assert len(sink.to("dave@example.org")) == 1


def test_non_member_post_is_held_not_delivered(
    als: str, post: Any, db: Database, drain: Any, sink: Sink
) -> None:
    # Our front MTA found the stranger's address genuine (an SPF pass for it).
    vouched = {"Authentication-Results":
               "lists.example.org; spf=pass smtp.mailfrom=stranger@example.com"}
    msg = make_message("stranger@example.com", "Buy now", "spam", message_id="s@x.com",
                       headers=vouched)
    reply = post(msg)
    assert reply.code == 250
    assert is_held(db, "s@x.com")
    assert count(db, Held) == 1
    assert count(db, Post) == 0
    drain()
    # Only the poster hears from us: the message waits for a moderator.
    assert sink.recipients() == ["stranger@example.com"]
    assert "awaits moderation" in str(sink.to("stranger@example.com")[0]["Subject"])


@pytest.mark.parametrize("results", [
    None,  # the front MTA recorded nothing: we cannot tell the sender is real
    "lists.example.org; spf=fail smtp.mailfrom=innocent@example.com; dmarc=fail"
    " header.from=example.com",
    "evil.example; spf=pass smtp.mailfrom=innocent@example.com",  # not our front MTA
])
def test_a_held_strangers_post_with_an_unverified_sender_causes_no_backscatter(
    als: str, post: Any, db: Database, drain: Any, sink: Sink, results: str | None
) -> None:
    msg = make_message("innocent@example.com", "Buy now", "spam", message_id="bs@x.com",
                       headers={"Authentication-Results": results} if results else None)
    assert post(msg).code == 250 and is_held(db, "bs@x.com")
    assert count(db, Held) == 1
    drain()
    assert sink.to("innocent@example.com") == []


def test_an_earlier_poster_is_told_that_their_post_waits(
    als: str, cli: Any, post: Any, db: Database, drain: Any, sink: Sink
) -> None:
    first = make_message("Fay <fay@example.com>", "Hello", "Hi all.", message_id="f1@x.com")
    assert post(first).code == 250
    held = json.loads(cli("held", "list", LIST, "--json").output)
    assert cli("held", "approve", str(held[0]["id"])).exit_code == 0
    drain()
    assert sink.to("fay@example.com") == []  # unverified and unknown: not told
    again = make_message("Fay <fay@example.com>", "Again", "Me again.", message_id="f2@x.com")
    assert post(again).code == 250 and is_held(db, "f2@x.com")
    drain()
    (told,) = sink.to("fay@example.com")
    assert "awaits moderation" in str(told["Subject"])


def test_post_to_two_lists_is_stored_in_each(als: str, cli: Any, post: Any,
                                             db: Database) -> None:
    cli("lists", "create", "caregivers", "--title", "Caregivers")
    cli("members", "add", "caregivers", "alice@example.org")
    msg = make_message("alice@example.org", "Both", "hi all", message_id="both@x.org")
    reply = post(msg, to=[LIST, "caregivers@lists.example.org"])
    assert reply.code == 250
    assert count(db, Thread) == 2


def test_list_that_keeps_the_authors_from(cli: Any, post: Any, drain: Any, sink: Sink) -> None:
    cli("lists", "create", "open-letters", "--title", "Open Letters", "--from-rewrite", "never")
    for address in ("alice@example.org", "bob@example.net"):
        cli("members", "add", "open-letters", address)
    msg = make_message("Alice Archer <alice@example.org>", "Hi", "x", message_id="o@x.org",
                       to="open-letters@lists.example.org")
    assert post(msg, to=["open-letters@lists.example.org"]).code == 250
    drain()
    (delivered,) = sink.to("bob@example.net")
    assert parseaddr(str(delivered["From"])) == ("Alice Archer", "alice@example.org")
    assert delivered["List-Id"] == "Open Letters <open-letters.lists.example.org>"
