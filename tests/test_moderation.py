"""Posting policies and the hold queue: approve, reject, discard and expire, by email and CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import pytest
from sqlalchemy import select

from listserv.app import environment
from listserv.config import Config
from listserv.inbound import moderation
from listserv.store.database import Database
from listserv.store.models import Held, Post

from .conftest import LIST, Clock, Sink, count, is_held, make_message
from .test_membership import last, send, text

STRANGER = "sam@example.com"
MOD = "maria@example.org"


@pytest.fixture
def moderated(als: str, cli: Any) -> str:
    """The seed list with Maria as moderator and Olga as owner."""
    result = cli("lists", "set", LIST, "--moderator", MOD, "--owner", "olga@example.org")
    assert result.exit_code == 0, result.output
    return als


# Our front MTA vouches for the stranger's address, so the hold notice is no backscatter.
VOUCHED = {"Authentication-Results": f"lists.example.org; spf=pass smtp.mailfrom={STRANGER}"}


def hold(post: Any, db: Database, sender: str = STRANGER, mid: str = "held@example.com") -> None:
    reply = send(post, sender, LIST, "A question", "Can I ask here?", message_id=mid,
                 headers=VOUCHED)
    assert reply.code == 250 and is_held(db, mid)


@pytest.mark.parametrize(
    ("policy", "sender", "outcome"),
    [
        ("open", STRANGER, "accepted"),
        ("open", "alice@example.org", "accepted"),
        ("members", STRANGER, "held"),
        ("members", "alice@example.org", "accepted"),
        ("moderated", "alice@example.org", "held"),
        ("announce", "alice@example.org", "rejected"),
        ("announce", STRANGER, "rejected"),
        ("announce", "olga@example.org", "accepted"),  # an owner
        ("announce", "pat@example.org", "accepted"),   # an approved poster
    ],
)
def test_posting_policies(moderated: str, cli: Any, post: Any, db: Database, policy: str,
                          sender: str, outcome: str) -> None:
    assert cli("lists", "set", LIST, "--policy", policy, "--poster", "pat@example.org"
               ).exit_code == 0
    reply = post(make_message(sender, "Hi", "hello", message_id="p@example.com"),
                 sender=sender)
    if outcome == "rejected":
        assert (reply.code, reply.text) == (
            550, "5.7.2 This list accepts posts only from its owners and approved posters")
        assert count(db, Post) + count(db, Held) == 0
    else:
        assert reply.code == 250
        assert count(db, Post) == (outcome == "accepted")
        assert count(db, Held) == (outcome == "held")


def test_member_marked_moderated_is_held(moderated: str, cli: Any, post: Any,
                                         db: Database) -> None:
    assert cli("members", "moderate", LIST, "bob@example.net").exit_code == 0
    hold(post, db, "bob@example.net")
    send(post, "alice@example.org", LIST, "Free", "not held", message_id="a@example.org")
    assert cli("members", "moderate", LIST, "bob@example.net", "--off").exit_code == 0
    send(post, "bob@example.net", LIST, "Free again", "x", message_id="b2@example.net")
    assert (count(db, Held), count(db, Post)) == (1, 2)


def test_held_message_approved_by_email(
    moderated: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    hold(post, db)
    again = send(post, STRANGER, LIST, "A question", "Can I ask here?",
                 message_id="held@example.com", headers=VOUCHED)
    assert "already" in again.text  # the same message again: stored once, poster told once
    drain()
    (waiting,) = sink.to(STRANGER)
    assert "awaits moderation" in str(waiting["Subject"])
    (notice,) = sink.to(MOD)
    assert sink.to("olga@example.org") == []  # owners stand in only when there is no moderator
    assert "A question" in str(notice["Subject"]) and "Can I ask here?" in text(notice)
    assert notice["Auto-Submitted"] == "auto-generated"
    address = parseaddr(str(notice["Reply-To"]))[1]

    send(post, MOD, address, "Re: " + str(notice["Subject"]), "approve\n\n> quoted notice")
    drain()
    assert count(db, Held) == 0
    with db.session() as s:
        (stored,) = s.scalars(select(Post)).all()
    assert stored.author_address == STRANGER
    assert [m["Message-ID"] for m in sink.to("dave@example.org")] == ["<held@example.com>"]

    # The token is single-use: a second decision is refused and changes nothing.
    send(post, MOD, address, "Re: again", "discard")
    drain()
    assert "already handled" in text(last(sink, MOD))
    assert count(db, Post) == 1


def test_moderator_reply_without_a_verb_changes_nothing(
    moderated: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    hold(post, db)
    drain()
    address = parseaddr(str(last(sink, MOD)["Reply-To"]))[1]
    send(post, MOD, address, "Re: held", "What is this?")
    drain()
    assert "Nothing done" in text(last(sink, MOD))
    assert count(db, Held) == 1
    send(post, MOD, address, "Re: held", "reject Please introduce yourself first.")
    drain()
    assert count(db, Held) == 0
    rejection = last(sink, STRANGER)
    assert rejection["Subject"] == "Your message to Living with ALS was not accepted"
    assert "Please introduce yourself first." in text(rejection)
    assert count(db, Post) == 0


def test_held_message_approved_by_cli(
    moderated: str, post: Any, drain: Any, sink: Sink, cli: Any, db: Database
) -> None:
    hold(post, db)
    listing = cli("held", "list", LIST, "--json")
    assert listing.exit_code == 0, listing.output
    (row,) = json.loads(listing.output)
    assert (row["sender"], row["subject"]) == (STRANGER, "A question")
    assert "is not a member" in row["reason"]
    shown = cli("held", "show", str(row["id"]))
    assert "Can I ask here?" in shown.output
    # The moderator sees who sent it in the envelope too; the text is as it arrived.
    assert f"envelope_sender: {STRANGER}\n" in shown.output
    assert "Return-Path" not in shown.output
    approved = cli("held", "approve", str(row["id"]))
    assert approved.exit_code == 0, approved.output
    drain()
    assert [m["Message-ID"] for m in sink.to("bob@example.net")] == ["<held@example.com>"]
    threads = json.loads(cli("threads", LIST, "--json").output)
    assert [t["subject"] for t in threads] == ["A question"]
    assert json.loads(cli("held", "list", LIST, "--json").output) == []


def test_held_message_rejected_and_discarded_by_cli(
    moderated: str, post: Any, drain: Any, sink: Sink, cli: Any, db: Database, clock: Clock
) -> None:
    hold(post, db, mid="one@example.com")
    hold(post, db, mid="two@example.com")
    drain()
    first, second = (r["id"] for r in json.loads(cli("held", "list", LIST, "--json").output))
    result = cli("held", "reject", str(first), "--reason", "Off topic here.")
    assert result.exit_code == 0, result.output
    assert cli("held", "discard", str(second)).exit_code == 0
    clock.now = datetime.now(UTC)  # the CLI queued the rejection at the wall clock's time
    drain()
    rejection = last(sink, STRANGER)
    assert "Off topic here." in text(rejection)
    assert rejection["In-Reply-To"] == "<one@example.com>"
    # Discarding tells nobody: the poster heard of the two holds and the one rejection.
    assert len(sink.to(STRANGER)) == 3
    assert count(db, Held) == count(db, Post) == 0
    missing = cli("held", "approve", str(first))
    assert missing.exit_code == 1
    assert missing.output.strip() == f"Error: no held message with id {first}"


def test_old_held_messages_expire_with_a_note(
    moderated: str, post: Any, drain: Any, sink: Sink, db: Database, config: Config,
    clock: Clock
) -> None:
    hold(post, db, mid="old@example.com")
    clock.advance(days=10)
    hold(post, db, "tina@example.com", mid="young@example.com")
    drain()  # the notes that the messages wait
    templates = environment(config.base_dir)
    assert moderation.expire(db, config, templates, clock.now) == 0
    clock.advance(days=4, minutes=1)
    assert moderation.expire(db, config, templates, clock.now) == 1
    drain()
    note = last(sink, STRANGER)
    assert note["Subject"] == "Your message to Living with ALS was not reviewed in time"
    assert "14 days" in text(note)
    with db.session() as s:
        assert s.scalars(select(Held.message_id)).all() == ["young@example.com"]


def test_forged_spam_that_is_rejected_or_expires_mails_nobody(
    moderated: str, post: Any, drain: Any, sink: Sink, cli: Any, db: Database, config: Config,
    clock: Clock
) -> None:
    """Spam naming an innocent sender, which no verdict of our front MTA vouches for, waits
    for a moderator; rejected or left to expire, it makes us mail that address nothing."""
    innocent = "innocent@example.com"
    for mid in ("spam1@example.com", "spam2@example.com"):
        reply = send(post, innocent, LIST, "Cheap pills", "Buy now.", message_id=mid)
        assert is_held(db, mid), reply.text
    first, _ = (r["id"] for r in json.loads(cli("held", "list", LIST, "--json").output))
    assert cli("held", "reject", str(first), "--reason", "Spam.").exit_code == 0
    clock.now = max(clock.now, datetime.now(UTC)) + timedelta(days=15)
    assert moderation.expire(db, config, environment(config.base_dir), clock.now) == 1
    drain()
    assert count(db, Held) == 0
    assert sink.to(innocent) == []
    assert len(sink.to(MOD)) == 2  # the moderator heard of both


def test_lists_set_validates_and_roles_are_listed(moderated: str, cli: Any) -> None:
    bad = cli("lists", "set", LIST, "--policy", "anarchy")
    assert bad.exit_code == 2 and "anarchy" in bad.output
    nothing = cli("lists", "set", LIST)
    assert nothing.exit_code == 1 and "nothing to change" in nothing.output
    wrong = cli("lists", "set", LIST, "--owner", "not-an-address")
    assert wrong.exit_code == 1 and "Traceback" not in wrong.output
    roles = json.loads(cli("lists", "roles", LIST, "--json").output)
    assert roles == [{"address": MOD, "role": "moderator"},
                     {"address": "olga@example.org", "role": "owner"}]
    assert cli("lists", "set", LIST, "--remove", MOD).exit_code == 0
    assert [r["address"] for r in json.loads(cli("lists", "roles", LIST, "--json").output)] \
        == ["olga@example.org"]


def test_held_expire_command(moderated: str, post: Any, cli: Any, clock: Clock,
                             db: Database) -> None:
    clock.now = datetime(2020, 1, 1, tzinfo=UTC)  # long before the wall clock the CLI reads
    hold(post, db)
    result = cli("held", "expire")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "discarded 1 held messages"
    assert count(db, Held) == 0


def test_owners_moderate_when_a_list_has_no_moderator(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    assert cli("lists", "set", LIST, "--owner", "olga@example.org").exit_code == 0
    hold(post, db)
    drain()
    (notice,) = sink.to("olga@example.org")
    assert str(notice["Subject"]) == "Held for moderation: A question"


def test_serve_expires_old_held_messages_when_it_starts(
    moderated: str, post: Any, config: Config, clock: Clock, loop_thread: Any, db: Database
) -> None:
    from listserv.server import Server

    hold(post, db)
    clock.advance(days=15)
    server = Server(config, clock, roles=("dispatcher",))
    loop_thread.run(server.start())
    loop_thread.run(server.stop())
    assert count(db, Held) == 0


def test_lists_show_names_the_policy(als: str, cli: Any) -> None:
    assert json.loads(cli("lists", "show", LIST, "--json").output)["policy"] == "members"
    cli("lists", "set", LIST, "--policy", "announce")
    assert "policy: announce" in cli("lists", "show", LIST).output
