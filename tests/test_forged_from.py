"""Posting as a member by forging the header From: when our front MTA records that the From
fails its domain's DMARC (its Authentication-Results, under the authserv-id ARC reads), the
post waits for a moderator instead of going out in the member's name."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from listserv.core import dmarc
from listserv.outbound.dmarc import Policies
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Held, Post

from .conftest import Sink, SmtpReply, count, is_held, make_message
from .test_membership import REQUEST

FAIL = "lists.example.org; spf=pass smtp.mailfrom=mallory@evil.example; dkim=none;" \
       " dmarc=fail (p=reject) header.from=example.org"
PASS = "lists.example.org; spf=pass smtp.mailfrom=alice@example.org;" \
       " dkim=pass header.d=example.org; dmarc=pass header.from=example.org"


def as_alice(results: list[str], message_id: str) -> Any:
    """A post with Alice's From, as our front MTA hands it over with its verdicts on top."""
    msg = make_message("Alice Archer <alice@example.org>", "Please send money",
                       "New bank details.", message_id=message_id)
    for value in results:
        msg["Authentication-Results"] = value
    return msg


def test_a_from_failing_dmarc_is_held_not_posted(als: str, post: Any, db: Database) -> None:
    reply = post(as_alice([FAIL], "forged@evil.example"), sender="mallory@evil.example")
    assert reply.code == 250 and is_held(db, "forged@evil.example")
    assert count(db, Post) == 0
    with db.session() as s:
        (held,) = s.scalars(select(Held)).all()
    assert held.reason == "DMARC fails for example.org: the From may be forged"
    # Alice's own mail, which passes, is posted as before.
    assert post(as_alice([PASS], "real@example.org")).text.startswith("2.0.0 Message accepted")
    assert count(db, Post) == 1


def test_only_our_front_mtas_verdict_counts(als: str, post: Any, db: Database) -> None:
    """A sender can write any header: a pass added under our authserv-id does not undo our
    MTA's fail, and a fail from another authserv-id is not ours to act on."""
    forged = post(as_alice([FAIL, PASS], "both@evil.example"), sender="mallory@evil.example")
    assert forged.code == 250 and is_held(db, "both@evil.example")
    theirs = FAIL.replace("lists.example.org;", "mx.elsewhere.example;")
    assert post(as_alice([theirs], "theirs@example.org")).code == 250
    assert not is_held(db, "theirs@example.org")
    assert (count(db, Held), count(db, Post)) == (1, 1)


def test_a_stranger_cannot_tell_from_the_smtp_dialogue_whether_a_from_is_a_member(
        als: str, post: Any, db: Database, drain: Any, sink: Sink) -> None:
    """Mallory probes addresses: one post with a member's From, one with an address nobody
    subscribed. Every reply of the two SMTP dialogues is the same, and she gets no email:
    only the hold queue, which she cannot see, tells the two apart."""
    def probe(author: str, message_id: str) -> SmtpReply:
        return post(make_message(author, "Hello", "Hi.", message_id=message_id),
                    sender="mallory@evil.example")

    member, stranger = probe("alice@example.org", "m1@evil.example"), \
        probe("nobody@example.org", "m2@evil.example")
    assert (member.rcpt, member.data) == (stranger.rcpt, stranger.data)
    assert member.data == (250, "2.0.0 Message accepted for delivery")
    assert not is_held(db, "m1@evil.example") and is_held(db, "m2@evil.example")
    drain()
    assert sink.to("mallory@evil.example") == []


@pytest.fixture
def front_mta_id(config_data: dict[str, Any]) -> None:
    config_data["dkim"] = {"arc_authserv_id": "mx.example.net"}


def test_the_authserv_id_is_the_one_arc_reads(front_mta_id: None, als: str, post: Any,
                                               db: Database) -> None:
    ours = FAIL.replace("lists.example.org;", "mx.example.net;")
    assert post(as_alice([ours], "mx@evil.example")).code == 250
    assert is_held(db, "mx@evil.example")
    assert post(as_alice([FAIL], "list@example.org")).code == 250
    assert not is_held(db, "list@example.org") and count(db, Post) == 1


@pytest.fixture
def dmarc_lookup(config_data: dict[str, Any]) -> None:
    config_data["dmarc"] = {"lookup": True, "timeout": 1.0}


RECORDS = {"_dmarc.example.org": ["v=DMARC1; p=reject"]}


def test_no_aligned_pass_for_a_domain_that_publishes_dmarc_is_held(
        dmarc_lookup: None, als: str, receiver: Server, post: Any, db: Database) -> None:
    """A front MTA that checks SPF and DKIM but not DMARC: no pass for example.org, which
    publishes p=reject, is as good as a DMARC fail."""
    assert receiver.handler is not None
    receiver.handler.dmarc = Policies(lambda name: RECORDS.get(name, []), ttl=60)
    unaligned = "lists.example.org; spf=pass smtp.mailfrom=mallory@evil.example; dkim=none"
    assert post(as_alice([unaligned], "u@evil.example")).code == 250
    assert is_held(db, "u@evil.example")
    with db.session() as s:
        assert "publishes DMARC p=reject" in s.scalar(select(Held.reason))
    # The same for Bob at example.net, which publishes no DMARC: posted.
    bob = make_message("bob@example.net", "Hi", "x", message_id="b@example.net",
                       headers={"Authentication-Results": unaligned})
    assert post(bob).code == 250 and not is_held(db, "b@example.net")
    assert (count(db, Held), count(db, Post)) == (1, 1)


def test_a_forged_digest_reply_at_request_is_held_like_a_post(
        dmarc_lookup: None, als: str, receiver: Server, post: Any, db: Database) -> None:
    """Mallory forges Alice's envelope and From on what reads as a reply to a digest, sent to
    -request: posted in its thread, it would go out as Alice's. No aligned pass, and
    example.org publishes p=reject: held, as the same words sent to the list are."""
    assert receiver.handler is not None
    receiver.handler.dmarc = Policies(lambda name: RECORDS.get(name, []), ttl=60)
    assert post(make_message("bob@example.net", "Ramps", "Wood or aluminium?",
                             message_id="ramps@example.net")).code == 250
    unaligned = "lists.example.org; spf=fail smtp.mailfrom=alice@example.org; dkim=none"
    reply = make_message(
        "Alice Archer <alice@example.org>", "Re: Living with ALS — daily digest, 3 Nov 2026",
        "Send your bank details to me.\n> living-with-als+t1@lists.example.org\n",
        to=REQUEST, message_id="digest@evil.example",
        headers={"Authentication-Results": unaligned})
    assert post(reply, to=[REQUEST]).code == 250
    assert is_held(db, "digest@evil.example") and count(db, Post) == 1
    with db.session() as s:
        assert "publishes DMARC p=reject" in s.scalar(select(Held.reason))


@pytest.mark.parametrize(("results", "verdict"), [
    ([], None),
    (["other.example; dmarc=fail header.from=example.org"], None),
    ([FAIL], dmarc.Checked("fail", False)),
    ([PASS], dmarc.Checked("pass", True)),
    ([FAIL, PASS], dmarc.Checked("fail", True)),
    (["LISTS.example.org 1; dmarc=FAIL header.from=Example.ORG"], dmarc.Checked("fail", False)),
    (["lists.example.org; dmarc=fail header.from=other.example"], dmarc.Checked(None, False)),
    (["lists.example.org; dkim=pass header.d=mail.example.org"], dmarc.Checked(None, True)),
    (["lists.example.org; dkim=pass header.d=notexample.org"], dmarc.Checked(None, False)),
    (["lists.example.org; spf=pass smtp.mailfrom=x@example.org"], dmarc.Checked(None, True)),
    (["lists.example.org; none"], dmarc.Checked(None, False)),
    (["lists.example.org; dkim=pass (" + "(" * 5000 + ")"], None),  # authres recurses
    (["lists.example.org; " + "dkim=pass header.d=x; " * 500], None),  # oversized
    (["lists.example.org;;; garbage"], None),
])
def test_what_the_front_mta_recorded(results: list[str], verdict: dmarc.Checked | None) -> None:
    assert dmarc.checked(results, "lists.example.org", "example.org") == verdict


@pytest.mark.parametrize(("found", "published", "held"), [
    (None, "reject", False),
    (dmarc.Checked("fail", True), None, True),
    (dmarc.Checked("pass", False), "reject", False),
    (dmarc.Checked("none", False), "reject", False),
    (dmarc.Checked(None, False), "none", True),
    (dmarc.Checked(None, False), None, False),
    (dmarc.Checked(None, True), "reject", False),
])
def test_when_a_from_counts_as_forged(found: dmarc.Checked | None, published: str | None,
                                      held: bool) -> None:
    assert (dmarc.forged_reason(found, "example.org", published) is not None) == held
