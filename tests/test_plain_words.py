"""Members ask in plain words, to the list itself or by replying to what we send."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import LIST, Clock, Sink
from .test_membership import REQUEST, confirm_address, last, members, modes, send, text

pytestmark = pytest.mark.both_databases

OWNER = "olga@example.org"


def test_please_remove_me_to_the_list_is_not_posted_and_leads_to_a_confirmed_unsubscribe(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock, scheduler: Any
) -> None:
    assert cli("lists", "set", LIST, "--owner", OWNER).exit_code == 0
    clock.now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    reply = send(
        post,
        "Bob Baker <bob@example.net>",
        LIST,
        "unsubscribe",
        "Please remove me from this list, thank you\n\nBob\n",
        message_id="bye@example.net",
    )
    assert "answer comes by email" in reply.text
    drain()
    # Nobody else sees Bob's request: it is no post.
    assert sink.to("alice@example.org") == [] and sink.to("dave@example.org") == []
    ask = last(sink, "bob@example.net")
    assert ask["Subject"] == "Confirm that you want to leave Living with ALS"
    assert ask["In-Reply-To"] == "<bye@example.net>"
    assert "bob@example.net" in members(cli)  # nothing before the mailbox confirms

    send(post, "bob@example.net", confirm_address(ask), "Re: " + str(ask["Subject"]), "")
    drain()
    assert last(sink, "bob@example.net")["Subject"] == "You have left Living with ALS"
    assert "bob@example.net" not in members(cli)

    # The owners read it in the next daily report.
    clock.now = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    scheduler()
    drain()
    (report,) = [m for m in sink.to(OWNER) if "daily report" in str(m["Subject"])]
    assert (
        "Written to the list as a request, not posted (each was asked to confirm by "
        "email):\n  bob@example.net: unsubscribe\n"
    ) in text(report).replace("\r\n", "\n")


def test_stop_inside_a_discussion_is_held_for_a_moderator_not_guessed(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink
) -> None:
    send(
        post,
        "alice@example.org",
        LIST,
        "Riluzole side effects",
        "My father feels dizzy since he started riluzole.",
        message_id="t@example.org",
    )
    drain()
    before = len(sink.received)
    reply = send(
        post,
        "dave@example.org",
        LIST,
        "Re: Riluzole side effects",
        "Stop!\n\n> My father feels dizzy since he started riluzole.\n",
        in_reply_to="t@example.org",
        message_id="stop@example.org",
    )
    assert reply.code == 250
    drain()
    assert not [r for r in sink.received[before:] if "alice@example.org" in r.rcpt_tos]
    (held,) = json.loads(cli("held", "list", LIST, "--json").output)
    assert "possibly a command" in held["reason"]
    assert "dave@example.org" in members(cli)
    assert modes(cli)["dave@example.org"] == "each"


def test_one_word_reply_to_the_welcome_and_plain_words_to_request_are_commands(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink
) -> None:
    # Erin replies "digest" to a welcome-like email from -request, quoting it.
    send(
        post,
        "erin@example.org",
        REQUEST,
        "Re: Welcome to Living with ALS",
        "Digest\n\nOn Fri, Nov 27, 2026, Living with ALS wrote:\n> Welcome!\n",
    )
    drain()
    ask = last(sink, "erin@example.org")
    assert ask["Subject"] == "Confirm how you receive Living with ALS"
    send(post, "erin@example.org", confirm_address(ask), "Re: confirm", "")
    drain()
    assert modes(cli)["erin@example.org"] == "digest"

    # Alice writes to -request in her own words.
    send(post, "alice@example.org", REQUEST, "", "daily digest please")
    drain()
    assert last(sink, "alice@example.org")["Subject"] == "Confirm how you receive Living with ALS"

    # A chatty message to -request is no command: it is quoted back, with how to post and
    # how to ask for help, and posted nowhere.
    send(
        post,
        "alice@example.org",
        REQUEST,
        "question",
        "How do I stop the digest emails from coming?",
    )
    drain()
    answer = last(sink, "alice@example.org")
    assert answer["Subject"] == "Your message was not posted to Living with ALS"
    assert "reply with the word HELP" in text(answer)


def thread_of(msg: Any) -> int:
    match = re.search(r"living-with-als-request\+mute-t(\d+)@lists\.example\.org", text(msg))
    assert match, text(msg)
    return int(match[1])


def copies(sink: Sink, address: str, message_id: str) -> int:
    return sum(1 for m in sink.to(address) if m["Message-ID"] == f"<{message_id}>")


def test_mute_stops_a_thread_and_follow_brings_one(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink
) -> None:
    send(
        post,
        "alice@example.org",
        LIST,
        "Feeding tubes",
        "Who has one?",
        message_id="tube@example.org",
    )
    send(
        post,
        "alice@example.org",
        LIST,
        "Wheelchairs",
        "Which brand?",
        message_id="chair@example.org",
    )
    drain()
    copy = next(m for m in sink.to("dave@example.org") if m["Message-ID"] == "<tube@example.org>")
    tube = thread_of(copy)
    mute = f"living-with-als-request+mute-t{tube}@lists.example.org"
    assert f"To stop receiving this conversation, write to {mute}" in text(copy)

    # Dave writes to the address of the footer, and confirms by one reply.
    send(post, "dave@example.org", mute, "mute", "")
    drain()
    ask = last(sink, "dave@example.org")
    assert 'conversation "Feeding tubes"' in text(ask)
    send(post, "dave@example.org", confirm_address(ask), "Re: confirm", "")
    drain()
    assert 'no more posts of the conversation "Feeding tubes"' in text(
        last(sink, "dave@example.org")
    )

    # Erin reads nothing (nomail) but follows the tube thread by email; Carol (digest)
    # follows the wheelchair thread, set by an admin.
    follow = f"living-with-als-request+follow-t{tube}@lists.example.org"
    send(post, "erin@example.org", follow, "follow", "")
    drain()
    send(post, "erin@example.org", confirm_address(last(sink, "erin@example.org")), "Re:", "")
    chair = thread_of(
        next(m for m in sink.to("dave@example.org") if m["Message-ID"] == "<chair@example.org>")
    )
    assert cli("members", "follow", LIST, "carol@example.com", str(chair)).exit_code == 0
    assert cli("members", "mute", LIST, "bob@example.net", str(chair)).exit_code == 0
    bad = cli("members", "mute", LIST, "bob@example.net", "999999")
    assert bad.exit_code != 0 and "no thread 999999" in bad.output

    send(
        post,
        "bob@example.net",
        LIST,
        "Re: Feeding tubes",
        "Mine since May.",
        in_reply_to="tube@example.org",
        message_id="tube2@example.org",
    )
    send(
        post,
        "dave@example.org",
        LIST,
        "Re: Wheelchairs",
        "Permobil.",
        in_reply_to="chair@example.org",
        message_id="chair2@example.org",
    )
    drain()
    assert copies(sink, "alice@example.org", "tube2@example.org") == 1
    assert copies(sink, "dave@example.org", "tube2@example.org") == 0  # muted
    assert copies(sink, "erin@example.org", "tube2@example.org") == 1  # followed
    assert copies(sink, "erin@example.org", "chair2@example.org") == 0
    assert copies(sink, "carol@example.com", "chair2@example.org") == 1  # followed
    assert copies(sink, "carol@example.com", "tube2@example.org") == 0
    assert copies(sink, "bob@example.net", "chair2@example.org") == 0  # muted
    assert copies(sink, "alice@example.org", "chair2@example.org") == 1


def test_a_stranger_learns_no_subject_from_the_mute_and_follow_addresses(
    als: str, post: Any, drain: Any, sink: Sink
) -> None:
    """Anyone may write to a footer's addresses. Mallory, no member, tries a thread that
    exists and one that does not: each answer names the conversation by its number only, and
    the two are alike."""
    send(post, "alice@example.org", LIST, "Feeding tubes", "Who has one?",
         message_id="tube@example.org")
    drain()
    tube = thread_of(next(m for m in sink.to("dave@example.org")
                          if m["Message-ID"] == "<tube@example.org>"))
    answers = []
    for wish, number in (("mute", tube), ("follow", tube), ("mute", 999999)):
        send(post, "mallory@evil.example",
             f"living-with-als-request+{wish}-t{number}@lists.example.org", wish, "")
        drain()
        ask = last(sink, "mallory@evil.example")
        answers.append(text(ask).replace("\r\n", "\n").replace(confirm_address(ask), "ADDRESS")
                       .replace(f"conversation number {number}\n", "conversation number N\n"))
    assert "Feeding tubes" not in "".join(answers)
    assert "each post of the conversation number N" in answers[1]
    assert answers[0] == answers[2]  # whether the thread exists or not


def test_a_pause_of_two_weeks_ends_with_one_reminder(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock, scheduler: Any
) -> None:
    clock.now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    send(post, "dave@example.org", LIST, "going away", "Pause 2 weeks please\n\nDave")
    drain()
    ask = last(sink, "dave@example.org")
    assert "until Friday 11 December 2026" in text(ask)
    assert sink.to("alice@example.org") == []  # not posted
    send(post, "dave@example.org", confirm_address(ask), "Re: confirm", "")
    drain()
    assert "until Friday 11 December 2026" in text(last(sink, "dave@example.org"))

    send(
        post, "alice@example.org", LIST, "News", "The trial opened.", message_id="news@example.org"
    )
    drain()
    assert copies(sink, "bob@example.net", "news@example.org") == 1
    assert copies(sink, "dave@example.org", "news@example.org") == 0

    clock.now = datetime(2026, 12, 10, 23, 0, tzinfo=UTC)
    scheduler()
    drain()
    assert not [m for m in sink.to("dave@example.org") if "again" in str(m["Subject"])]
    clock.now = datetime(2026, 12, 11, 0, 30, tzinfo=UTC)
    scheduler()
    scheduler()  # a second scheduler, or a restart: still one reminder
    drain()
    (reminder,) = [m for m in sink.to("dave@example.org") if "again" in str(m["Subject"])]
    assert reminder["Subject"] == "You are receiving Living with ALS again"
    assert "reply to this message with the word PAUSE" in text(reminder)
    send(
        post, "alice@example.org", LIST, "More news", "Recruiting.", message_id="news2@example.org"
    )
    drain()
    assert copies(sink, "dave@example.org", "news2@example.org") == 1


def test_a_muted_thread_is_left_out_of_that_readers_digest_only(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock, scheduler: Any
) -> None:
    assert cli("members", "add", LIST, "gina@example.org", "--mode", "digest").exit_code == 0
    clock.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    send(
        post,
        "alice@example.org",
        LIST,
        "Feeding tubes",
        "Who has one?",
        message_id="tube@example.org",
    )
    send(
        post, "bob@example.net", LIST, "Wheelchairs", "Which brand?", message_id="chair@example.org"
    )
    drain()
    tube = thread_of(
        next(m for m in sink.to("dave@example.org") if m["Message-ID"] == "<tube@example.org>")
    )
    assert cli("members", "mute", LIST, "carol@example.com", str(tube)).exit_code == 0
    clock.now = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)
    scheduler()
    drain()

    def digest_text(address: str) -> str:
        (msg,) = [m for m in sink.to(address) if "daily digest" in str(m["Subject"])]
        body = msg.get_body(preferencelist=("plain",))
        return str(body.get_content())

    carol, gina = digest_text("carol@example.com"), digest_text("gina@example.org")
    assert "Wheelchairs" in carol and "Feeding tubes" not in carol
    assert "Wheelchairs" in gina and "Feeding tubes" in gina


def test_each_reader_gets_the_digest_once_at_their_own_hour(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock, scheduler: Any
) -> None:
    assert (
        cli(
            "members",
            "set",
            LIST,
            "carol@example.com",
            "--digest-hour",
            "18",
            "--timezone",
            "Europe/Berlin",
        ).exit_code
        == 0
    )
    bad = cli("members", "set", LIST, "carol@example.com", "--timezone", "Mars/Olympus")
    assert bad.exit_code != 0 and "Mars/Olympus" in bad.output
    assert cli("members", "add", LIST, "gina@example.org", "--mode", "digest").exit_code == 0
    # Dave asks by email, in plain words, and confirms.
    clock.now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    send(post, "dave@example.org", REQUEST, "", "digest at 6am please")
    drain()
    ask = last(sink, "dave@example.org")
    assert "one digest a day\ninstead of each message, at 06:00." in text(ask).replace("\r\n", "\n")
    send(post, "dave@example.org", confirm_address(ask), "Re: confirm", "")
    clock.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    send(post, "alice@example.org", LIST, "Feeding tubes", "Who has one?")
    drain()

    def digests(address: str) -> int:
        return sum(1 for m in sink.to(address) if "daily digest" in str(m["Subject"]))

    clock.now = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)  # the list's hour: the run opens
    scheduler()
    drain()
    assert (
        digests("gina@example.org"),
        digests("carol@example.com"),
        digests("dave@example.org"),
    ) == (1, 0, 0)
    # Dave's 06:00 UTC has passed today: his comes tomorrow at six, Carol's at 18:00 Berlin.
    send(post, "alice@example.org", REQUEST, "help", "")  # other mail is not held back
    drain()
    assert last(sink, "alice@example.org")["Subject"] == "Help for Living with ALS"
    clock.now = datetime(2026, 11, 3, 16, 59, tzinfo=UTC)
    drain()
    assert digests("carol@example.com") == 0
    clock.now = datetime(2026, 11, 3, 17, 0, tzinfo=UTC)
    scheduler()  # a restart changes nothing
    drain()
    clock.now = datetime(2026, 11, 4, 6, 0, tzinfo=UTC)
    drain()
    assert (
        digests("gina@example.org"),
        digests("carol@example.com"),
        digests("dave@example.org"),
    ) == (1, 1, 1)
