"""Protecting the community: probation for new members, daily limits, the emergency brake,
and pausing the outbox, all without losing a word."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from listserv.core import dmarc, policy
from listserv.core.message import Parsed
from listserv.core.replies import Outcome
from listserv.store.database import Database
from listserv.store.models import Delivery, Held, Post

from .conftest import LIST, Clock, Sink, count, is_held, make_message

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def say(post: Any, db: Database, sender: str, subject: str, mid: str) -> bool:
    """A post from `sender`, answered 250; whether it waits for a moderator."""
    reply = post(make_message(sender, subject, f"{subject}, from {sender}.", message_id=mid))
    assert reply.code == 250, reply.text
    return is_held(db, mid)


def held_ids(cli: Any) -> list[int]:
    return [row["id"] for row in json.loads(cli("held", "list", LIST, "--json").output)]


def test_a_new_members_first_posts_wait_until_a_moderator_trusts_them(
    als: str, cli: Any, post: Any, clock: Clock, db: Database
) -> None:
    clock.now = NOW
    assert cli("lists", "set", LIST, "--probation", "3").exit_code == 0
    assert cli("members", "add", LIST, "frank@example.org").exit_code == 0
    assert say(post, db, "frank@example.org", "Hello all", "f1@example.org")
    (first,) = held_ids(cli)
    assert cli("held", "approve", str(first)).exit_code == 0
    assert say(post, db, "frank@example.org", "Second", "f2@example.org")
    (second,) = held_ids(cli)
    approved = cli("held", "approve", str(second), "--trust")
    assert approved.exit_code == 0, approved.output
    # Trusted after two of three: the third goes straight through.
    assert not say(post, db, "frank@example.org", "Third", "f3@example.org")
    assert count(db, Post) == 3
    # --trust names a member: a stranger's held post cannot end a probation.
    assert say(post, db, "stranger@example.com", "Spam", "s1@example.com")
    (stranger,) = held_ids(cli)
    refused = cli("held", "approve", str(stranger), "--trust")
    assert refused.exit_code == 1
    assert "stranger@example.com is not a member" in refused.output


def test_probation_counts_the_posts_a_member_made_before_it_began(
    als: str, cli: Any, post: Any, clock: Clock, db: Database
) -> None:
    clock.now = NOW
    say(post, db, "alice@example.org", "Before", "a0@example.org")
    assert cli("lists", "set", LIST, "--probation", "2").exit_code == 0
    assert say(post, db, "alice@example.org", "After", "a1@example.org")
    (held,) = held_ids(cli)
    assert cli("held", "approve", str(held)).exit_code == 0
    assert not say(post, db, "alice@example.org", "Third", "a2@example.org")


@pytest.mark.both_databases
def test_daily_limits_hold_the_excess_with_a_reason_and_lose_nothing(
    als: str, cli: Any, post: Any, clock: Clock, db: Database
) -> None:
    clock.now = NOW
    result = cli("lists", "set", LIST, "--max-posts-per-day", "2", "--max-list-posts-per-day", "3")
    assert result.exit_code == 0, result.output
    assert "max_posts_per_day=2 max_list_posts_per_day=3" in result.output
    for n in range(3):
        say(post, db, "bob@example.net", f"Bob {n}", f"b{n}@example.net")
    say(post, db, "alice@example.org", "Alice", "a0@example.org")
    say(post, db, "dave@example.org", "Dave", "d0@example.org")
    rows = json.loads(cli("held", "list", LIST, "--json").output)
    assert [r["reason"] for r in rows] == [
        "bob@example.net already posted 2 times in the last 24 hours (the limit is 2 a day)",
        "the list had 3 posts in the last 24 hours (its limit is 3 a day)",
    ]
    assert (count(db, Post), count(db, Held)) == (3, 2)
    clock.advance(hours=24, minutes=1)
    assert not say(post, db, "bob@example.net", "Next day", "b9@example.net")
    assert (
        cli(
            "lists", "set", LIST, "--max-posts-per-day", "off", "--max-list-posts-per-day", "off"
        ).exit_code
        == 0
    )
    for bad in ("0", "-1", "many"):
        refused = cli("lists", "set", LIST, "--max-posts-per-day", bad)
        assert refused.exit_code == 1
        assert refused.output.strip() == (
            f"Error: invalid --max-posts-per-day {bad!r}: give a number of posts > 0, or 'off'"
        )


def test_the_emergency_brake_holds_every_post_until_released(
    als: str, cli: Any, post: Any, clock: Clock, db: Database, drain: Any, sink: Sink
) -> None:
    clock.now = NOW
    on = cli("lists", "set", LIST, "--emergency", "on")
    assert on.exit_code == 0, on.output
    assert "emergency brake on" in on.output
    assert say(post, db, "alice@example.org", "Flood", "a1@example.org")
    assert cli("lists", "set", LIST, "--owner", "olga@example.org").exit_code == 0
    assert say(post, db, "olga@example.org", "Owner too", "o1@example.org")
    assert json.loads(cli("lists", "show", LIST, "--json").output)["emergency"] == "on"
    drain()
    assert not [m for m in sink.received if m.message["Subject"].startswith("[Living")]
    assert cli("lists", "set", LIST, "--emergency", "off").exit_code == 0
    assert not say(post, db, "alice@example.org", "Calm", "a2@example.org")
    assert count(db, Held) == 2


def test_outbox_pause_keeps_everything_queued_and_resume_sends_it(
    als: str,
    cli: Any,
    post: Any,
    clock: Clock,
    db: Database,
    drain: Any,
    sink: Sink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock.now = NOW
    paused = cli("outbox", "pause")
    assert paused.exit_code == 0, paused.output
    say(post, db, "alice@example.org", "While paused", "a1@example.org")
    join = make_message(
        "newbie@example.org", "subscribe", "", to="living-with-als-request@lists.example.org"
    )
    assert post(join, to=["living-with-als-request@lists.example.org"]).code == 250
    with caplog.at_level(logging.WARNING):
        drain()
    assert sink.received == []
    assert "SENDING PAUSED for every list" in caplog.text
    shown = cli("outbox")
    assert shown.output.startswith("SENDING PAUSED for every list")
    assert "newbie@example.org" in shown.output and "bob@example.net" in shown.output
    assert count(db, Delivery, Delivery.status == "queued") == 3
    resumed = cli("outbox", "resume")
    assert resumed.output.strip() == "sending resumed"
    drain()
    assert sorted(sink.recipients()) == [
        "bob@example.net",
        "dave@example.org",
        "newbie@example.org",
    ]
    assert "SENDING PAUSED" not in cli("outbox").output


@pytest.mark.both_databases
def test_pausing_one_list_lets_the_others_send(
    als: str, cli: Any, post: Any, clock: Clock, db: Database, drain: Any, sink: Sink
) -> None:
    clock.now = NOW
    assert cli("lists", "create", "caregivers", "--title", "Caregivers").exit_code == 0
    for member in ("alice@example.org", "carol@example.com"):
        assert cli("members", "add", "caregivers", member).exit_code == 0
    assert cli("outbox", "pause", LIST).output.strip() == (
        f"SENDING PAUSED for {LIST} (listserv outbox resume LIST)"
    )
    say(post, db, "alice@example.org", "Paused list", "a1@example.org")
    other = make_message(
        "alice@example.org",
        "Other list",
        "hi",
        message_id="c1@example.org",
        to="caregivers@lists.example.org",
    )
    assert post(other, to=["caregivers@lists.example.org"]).code == 250
    drain()
    assert sink.recipients() == ["carol@example.com"]
    assert cli("outbox", "resume", LIST).exit_code == 0
    drain()
    assert sorted(sink.recipients()) == ["bob@example.net", "carol@example.com", "dave@example.org"]
    missing = cli("outbox", "pause", "nosuch")
    assert missing.exit_code == 1 and "nosuch" in missing.output


PARSED = Parsed(
    **{
        **{f: None for f in Parsed.__dataclass_fields__},
        "author_address": "a@example.org",
        "message_id": "m@x",
    }
)


@pytest.mark.parametrize(
    ("facts", "outcome", "reason"),
    [
        ({}, Outcome.ACCEPTED, "post from member"),
        ({"emergency": True}, Outcome.HELD, "emergency brake"),
        (
            {"emergency": True, "posting_policy": "announce", "author_may_announce": True},
            Outcome.HELD,
            "emergency brake",
        ),
        ({"emergency": True, "already_stored": True}, Outcome.DUPLICATE, "already stored"),
        ({"probation": 2, "author_posts": 1}, Outcome.HELD, "this is post 2"),
        ({"probation": 2, "author_posts": 2}, Outcome.ACCEPTED, "post from member"),
        ({"probation": 2, "author_trusted": True}, Outcome.ACCEPTED, "post from member"),
        ({"probation": 2, "author_is_member": False}, Outcome.HELD, "is not a member"),
        ({"max_posts_per_day": 1, "author_posts_today": 1}, Outcome.HELD, "limit is 1 a day"),
        ({"max_posts_per_day": 2, "author_posts_today": 1}, Outcome.ACCEPTED, "post from"),
        ({"max_list_posts_per_day": 5, "list_posts_today": 5}, Outcome.HELD, "its limit is 5"),
        (
            {
                "posting_policy": "open",
                "author_is_member": False,
                "max_posts_per_day": 1,
                "author_posts_today": 1,
            },
            Outcome.HELD,
            "limit is 1 a day",
        ),
    ],
)
def test_protection_rules(facts: dict[str, Any], outcome: Outcome, reason: str) -> None:
    base = {"list_address": LIST, "author_is_member": True, "already_stored": False}
    decision = policy.decide(PARSED, policy.Facts(**{**base, **facts}))
    assert decision.outcome is outcome
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("results", "verified"),
    [
        ([], False),
        (["lists.example.org; spf=pass smtp.mailfrom=sam@example.com"], True),
        (["lists.example.org; spf=pass smtp.mailfrom=sam@mail.example.com"], True),
        (["lists.example.org; spf=pass smtp.mailfrom=x@evil.example"], False),
        (["lists.example.org; dkim=pass header.d=example.com"], True),
        (["lists.example.org; dmarc=pass header.from=example.com"], True),
        (["lists.example.org; spf=softfail smtp.mailfrom=sam@example.com"], False),
        (["mx.evil.example; spf=pass smtp.mailfrom=sam@example.com"], False),
    ],
)
def test_which_senders_our_front_mta_vouches_for(results: list[str], verified: bool) -> None:
    assert dmarc.sender_verified(results, "lists.example.org", "sam@example.com") is verified
