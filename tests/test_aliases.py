"""Author aliases: posts come From the author's private alias on the list; members' mail to
it reaches the author privately, both addresses stay hidden, and strangers' mail is dropped
with the same answer a member gets, so an alias tells nobody who is on the list."""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Any

import dkim
import pytest

from listserv.store.database import Database
from listserv.store.models import Post

from .conftest import Sink, count, make_message

FORUM = "open-forum@lists.example.org"


@pytest.fixture
def forum(cli: Any) -> str:
    result = cli("lists", "create", "open-forum", "--title", "Open Forum", "--from-rewrite",
                 "alias")
    assert result.exit_code == 0, result.output
    for address, name in [("alice@example.org", "Alice Archer"), ("bob@example.net", "Bob Baker"),
                          ("dave@example.org", "Dave Dunn")]:
        assert cli("members", "add", FORUM, address, "--name", name).exit_code == 0
    return FORUM


def alias_of_author(sink: Sink, reader: str) -> tuple[str, str]:
    (msg,) = sink.to(reader)
    return parseaddr(str(msg["From"]))


def test_post_comes_from_the_authors_alias_and_hides_the_address(
    forum: str, post: Any, drain: Any, sink: Sink
) -> None:
    msg = make_message("Alice Archer <alice@example.org>", "Hi", "Hello.", to=FORUM,
                       message_id="a1@example.org")
    assert post(msg, to=[FORUM]).code == 250
    drain()
    name, address = alias_of_author(sink, "dave@example.org")
    assert name == "Alice Archer via Open Forum"
    assert re.fullmatch(r"open-forum\+a[a-z2-7]{12}@lists\.example\.org", address)
    (delivered,) = sink.to("dave@example.org")
    # Replies go to the list (its thread's address), never to the author's real address.
    assert re.fullmatch(r"open-forum\+t\d+@lists\.example\.org",
                        parseaddr(str(delivered["Reply-To"]))[1])
    assert delivered["X-Original-From"] is None
    headers = sink.received[0].content.split(b"\r\n\r\n", 1)[0]
    assert b"alice@example.org" not in headers
    # Stable: the next post by Alice carries the same alias; Bob's differs.
    assert post(make_message("alice@example.org", "Again", "x", to=FORUM,
                             message_id="a2@example.org"), to=[FORUM]).code == 250
    assert post(make_message("bob@example.net", "Me", "x", to=FORUM,
                             message_id="b1@example.net"), to=[FORUM]).code == 250
    drain()
    froms = [parseaddr(str(m["From"]))[1] for m in sink.to("dave@example.org")]
    assert froms[0] == froms[1] == address != froms[2]


def test_private_reply_reaches_only_the_author_and_comes_back(
    signed: Any, forum: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    assert post(make_message("Alice Archer <alice@example.org>", "Hi", "Hello.", to=FORUM,
                             message_id="a1@example.org"), to=[FORUM]).code == 250
    drain()
    _, alice_alias = alias_of_author(sink, "bob@example.net")
    sink.received.clear()

    private = make_message("Bob Baker <bob@example.net>", "Re: Hi", "Just between us.",
                           to=alice_alias, message_id="p1@example.net",
                           headers={"Reply-To": "bob.private@example.net"})
    reply = post(private, to=[alice_alias], sender="bob@example.net")
    assert reply.code == 250
    drain()
    assert count(db, Post) == 1  # not posted to the list
    assert [r.rcpt_tos for r in sink.received] == [["alice@example.org"]]
    received = sink.received[0]
    relayed = received.message
    assert relayed.get_content().startswith("Just between us.")
    bob_name, bob_alias = parseaddr(str(relayed["From"]))
    assert bob_name == "Bob Baker via Open Forum"
    assert bob_alias.startswith("open-forum+a") and bob_alias != alice_alias
    assert b"bob@example.net" not in received.content
    assert b"bob.private@example.net" not in received.content
    assert relayed["Auto-Submitted"] is None  # a person's mail, not ours
    assert dkim.verify(received.content, dnsfunc=signed)

    # Alice answers Bob's alias: it reaches Bob, still privately.
    sink.received.clear()
    answer = make_message("alice@example.org", "Re: Hi", "Thanks!", to=bob_alias,
                          message_id="p2@example.org")
    assert post(answer, to=[bob_alias], sender="alice@example.org").code == 250
    drain()
    assert [r.rcpt_tos for r in sink.received] == [["bob@example.net"]]
    assert parseaddr(str(sink.received[0].message["From"]))[1] == alice_alias


def test_an_alias_does_not_tell_who_is_a_member(
    forum: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    """A prober writes to Alice's alias as Bob (a member) and as a stranger: every answer,
    at RCPT and after DATA, is the same; only the member's mail reaches Alice."""
    assert post(make_message("alice@example.org", "Hi", "Hello.", to=FORUM,
                             message_id="a1@example.org"), to=[FORUM]).code == 250
    drain()
    _, alice_alias = alias_of_author(sink, "bob@example.net")
    sink.received.clear()
    answers = {}
    for sender, author in [("bob@example.net", "bob@example.net"),
                           ("spammer@example.com", "spammer@example.com"),
                           ("bob@example.net", "spammer@example.com"),  # forged From
                           ("spammer@example.com", "bob@example.net")]:  # forged envelope
        msg = make_message(author, "Hello", "Are you there?", to=alice_alias)
        reply = post(msg, to=[alice_alias], sender=sender)
        answers[(sender, author)] = (tuple(reply.rcpt), reply.data)
    assert len(set(answers.values())) == 1, answers
    (rcpt, data), *_ = answers.values()
    assert rcpt[0][0] == 250 and data is not None and data[0] == 250
    drain()
    assert [r.rcpt_tos for r in sink.received] == [["alice@example.org"]]
    assert sink.received[0].message["Subject"] == "Hello"
    assert count(db, Post) == 1


def test_a_forged_member_from_is_not_relayed_in_their_name(
    forum: str, post: Any, drain: Any, sink: Sink
) -> None:
    """Mallory writes to Alice's alias with Bob's address as envelope and From; our front
    MTA found the From's DMARC failing. Relayed, it would reach Alice as "Bob via Open
    Forum": it is dropped with the answer Bob's own mail gets."""
    assert post(make_message("alice@example.org", "Hi", "Hello.", to=FORUM,
                             message_id="a1@example.org"), to=[FORUM]).code == 250
    drain()
    _, alice_alias = alias_of_author(sink, "bob@example.net")
    sink.received.clear()
    forged = make_message("Bob Baker <bob@example.net>", "Your account", "Send me your PIN.",
                          to=alice_alias, message_id="forged@evil.example", headers={
                              "Authentication-Results":
                                  "lists.example.org; dmarc=fail header.from=example.net"})
    genuine = make_message("Bob Baker <bob@example.net>", "Hello", "Are you there?",
                           to=alice_alias, message_id="real@example.net")
    replies = [post(m, to=[alice_alias], sender="bob@example.net") for m in (forged, genuine)]
    assert replies[0].data == replies[1].data and replies[0].data[0] == 250
    drain()
    assert [m["Subject"] for m in sink.to("alice@example.org")] == ["Hello"]


def test_an_automatic_message_to_an_alias_does_not_tell_who_is_a_member(
    forum: str, post: Any, drain: Any, sink: Sink
) -> None:
    """The prober marks her mail as automatic (a vacation notice, which is dropped): as Bob
    and as a stranger, the answers are the same, and nothing reaches Alice."""
    assert post(make_message("alice@example.org", "Hi", "Hello.", to=FORUM,
                             message_id="a1@example.org"), to=[FORUM]).code == 250
    drain()
    _, alice_alias = alias_of_author(sink, "bob@example.net")
    sink.received.clear()
    answers = set()
    for sender in ("bob@example.net", "spammer@example.com"):
        msg = make_message(sender, "Away", "I am away until Monday.", to=alice_alias,
                           headers={"Auto-Submitted": "auto-replied"})
        reply = post(msg, to=[alice_alias], sender=sender)
        answers.add((tuple(reply.rcpt), reply.data))
    assert len(answers) == 1, answers
    drain()
    assert sink.received == []


def test_an_alias_nobody_has_is_unknown(forum: str, post: Any) -> None:
    unknown = post(make_message("bob@example.net", "Hi", "x"),
                   to=["open-forum+aaaaaaaaaaaaa@lists.example.org"], sender="bob@example.net")
    assert unknown.code == 550 and unknown.text.startswith("5.1.1")


def test_reply_all_is_a_post_not_also_a_private_copy(
    forum: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    assert post(make_message("alice@example.org", "Hi", "Hello.", to=FORUM,
                             message_id="a1@example.org"), to=[FORUM]).code == 250
    drain()
    _, alice_alias = alias_of_author(sink, "bob@example.net")
    sink.received.clear()
    both = make_message("bob@example.net", "Re: Hi", "To all.", to=f"{alice_alias}, {FORUM}",
                        message_id="r1@example.net", in_reply_to="a1@example.org")
    assert post(both, to=[alice_alias, FORUM], sender="bob@example.net").code == 250
    drain()
    assert count(db, Post) == 2
    assert len(sink.to("alice@example.org")) == 1
    assert len(sink.to("dave@example.org")) == 1
