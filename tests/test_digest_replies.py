"""A member's words are never dropped: a plain Reply to a digest lands in the thread it
answers, or the member is asked which conversation they meant; a non-command written to
-request is quoted back with how to post it."""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from listserv.core import digestreply
from listserv.store.database import Database
from listserv.store.models import Held, Post, Thread

from .conftest import Clock, Sink, count, make_message
from .test_digest import CAROL, DIGEST_DUE, MONDAY, digests_to, parts, seed_thread

REQUEST = "living-with-als-request@lists.example.org"
RAMPS = "Wheelchair ramps: wood or aluminium?"


def digest_with_two_threads(
    post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink
) -> EmailMessage:
    """Monday's digest, as Carol gets it: the massage thread and Dave's ramp question."""
    seed_thread(post, clock)
    clock.advance(minutes=30)
    ramps = make_message(
        "Dave Dunn <dave@example.org>",
        RAMPS,
        "Our porch needs a ramp. Which lasts longer?",
        message_id="d1@example.org",
    )
    assert post(ramps).code == 250
    clock.now = DIGEST_DUE
    scheduler()
    drain()
    (msg,) = digests_to(sink, CAROL)
    return msg


def plain_reply(digest: EmailMessage, body: str, message_id: str) -> EmailMessage:
    """What a phone's Reply button makes of a digest: to its From, Re: its subject."""
    reply = make_message(
        "Carol Cole <carol@example.com>",
        "Re: " + str(digest["Subject"]),
        body,
        to=email.utils.parseaddr(str(digest["From"]))[1],
        message_id=message_id,
        in_reply_to=str(digest["Message-ID"])[1:-1],
        references=str(digest["Message-ID"]),
    )
    return reply


def quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def thread_of(db: Database, message_id: str) -> str:
    with db.session() as s:
        stored = s.scalars(select(Post).where(Post.message_id == message_id)).one()
        return s.get_one(Thread, stored.thread_id).subject


def test_a_reply_written_inside_a_section_of_the_digest_lands_in_that_thread(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> None:
    msg = digest_with_two_threads(post, clock, scheduler, drain, sink)
    text, _ = parts(msg)
    before, after = text.split("Our porch needs a ramp. Which lasts longer?\n")
    body = (
        f"On Tue, the list wrote:\n{quote(before)}\n> Our porch needs a ramp."
        f" Which lasts longer?\n\nAluminium: ours is ten years old and fine.\n\n"
        f"{quote(after)}\n"
    )
    assert post(plain_reply(msg, body, "c2@example.com"), to=[REQUEST]).code == 250
    assert thread_of(db, "c2@example.com") == RAMPS
    drain()
    (copy,) = [m for m in sink.to("dave@example.org") if "c2@example.com" in m["Message-ID"]]
    # Posted under the thread's subject, not the digest's.
    assert copy["Subject"] == f"[Living with ALS] Re: {RAMPS}"
    assert not [m for m in sink.to(CAROL) if "Help for" in str(m["Subject"])]


def test_a_reply_quoting_one_section_or_naming_its_subject_lands_there(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> None:
    msg = digest_with_two_threads(post, clock, scheduler, drain, sink)
    text, _ = parts(msg)
    end = "living-with-als+t1@lists.example.org"
    section = text[text.index("From: Alice Archer") : text.index(end) + len(end)]
    one = plain_reply(
        msg, "My mother had massage twice a week.\n\n" + quote(section), "c3@example.com"
    )
    assert post(one, to=[REQUEST]).code == 250
    assert thread_of(db, "c3@example.com") == "Massage therapy?"
    renamed = make_message(
        "Carol Cole <carol@example.com>",
        "Re: " + RAMPS,
        "We used wood and it rotted in three winters, sadly.",
        to=REQUEST,
        message_id="c4@example.com",
        in_reply_to=str(msg["Message-ID"])[1:-1],
    )
    assert post(renamed, to=[REQUEST]).code == 250
    assert thread_of(db, "c4@example.com") == RAMPS


def ambiguous_reply(
    post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> EmailMessage:
    """Carol thanks everyone on top of the whole digest: which thread is not said. The one
    email she gets back."""
    msg = digest_with_two_threads(post, clock, scheduler, drain, sink)
    text, _ = parts(msg)
    words = "Thank you all, this list is such a help to our family."
    reply = plain_reply(
        msg, f"{words}\n\nOn Tue, the list wrote:\n{quote(text)}\n", "c5@example.com"
    )
    assert post(reply, to=[REQUEST]).code == 250
    assert post(reply, to=[REQUEST]).code == 250  # a retry after a lost 250: asked once
    assert count(db, Post, Post.message_id == "c5@example.com") == 0
    assert count(db, Held, Held.message_id == "c5@example.com") == 1
    drain()
    (question,) = [m for m in sink.to(CAROL) if m["Subject"] == "Which conversation did you mean?"]
    assert "Nothing was sent to the list yet." in question.get_content()
    return question


def test_answering_which_conversation_with_its_number_posts_the_reply_there(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> None:
    question = ambiguous_reply(post, clock, scheduler, drain, sink, db)
    reply_to = email.utils.parseaddr(str(question["Reply-To"]))[1]
    assert "-confirm+t0." in reply_to

    def answer(words: str, mid: str) -> None:
        msg = make_message(
            "Carol Cole <carol@example.com>",
            "Re: " + question["Subject"],
            f"{words}\n\n> Which conversation did you mean?",
            to=reply_to,
            message_id=mid,
        )
        assert post(msg, to=[reply_to]).code == 250

    answer("the one about ramps", "c7@example.com")  # not a number: asked again
    assert count(db, Held, Held.message_id == "c5@example.com") == 1
    drain()
    assert len([m for m in sink.to(CAROL) if m["Subject"] == question["Subject"]]) == 2
    answer("2", "c8@example.com")
    assert thread_of(db, "c5@example.com") == RAMPS
    assert count(db, Held) == 0


def test_an_ambiguous_reply_is_held_and_the_member_chooses_the_conversation(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> None:
    question = ambiguous_reply(post, clock, scheduler, drain, sink, db)
    lines = question.get_content().splitlines()
    addresses = {
        lines[i - 1].strip(): lines[i].strip()
        for i, line in enumerate(lines)
        if "-confirm+t" in line
    }
    assert set(addresses) == {"1. Massage therapy?", "2. " + RAMPS}
    addresses = {key.split(". ", 1)[1]: value for key, value in addresses.items()}
    # Someone else cannot use Carol's choice.
    forged = make_message("Bob Baker <bob@example.net>", "yes", "yes", to=addresses[RAMPS])
    assert post(forged, to=[addresses[RAMPS]]).code == 250
    assert count(db, Held, Held.message_id == "c5@example.com") == 1
    choose = make_message(
        "Carol Cole <carol@example.com>",
        "Re: " + question["Subject"],
        "yes",
        to=addresses[RAMPS],
        message_id="c6@example.com",
    )
    assert post(choose, to=[addresses[RAMPS]]).code == 250
    assert thread_of(db, "c5@example.com") == RAMPS
    assert count(db, Held, Held.message_id == "c5@example.com") == 0
    assert count(db, Post, Post.message_id == "c6@example.com") == 0
    drain()
    assert [m for m in sink.to("alice@example.org") if "c5@example.com" in m["Message-ID"]]
    # A second use of the same address posts nothing twice.
    assert post(choose, to=[addresses[RAMPS]]).code == 250
    assert count(db, Post, Post.message_id == "c5@example.com") == 1


def test_a_stranger_learns_no_subject_by_replying_to_a_digest_she_never_got(
    als: str, post: Any, clock: Clock, drain: Any, sink: Sink, db: Database
) -> None:
    """Mallory, no member, writes to -request what looks like a reply to a digest, naming
    thread addresses; her own domain vouches for her, so she could be told things. Two
    threads that exist, one that exists, two that do not: each time her words come back
    unposted, no subject is named and nothing is held or posted."""
    seed_thread(post, clock)
    mallory = "mallory@evil.example"
    vouched = {"Authentication-Results": f"lists.example.org; spf=pass smtp.mailfrom={mallory}"}
    for n, threads in enumerate(((1, 2), (1,), (999998, 999999))):
        probe = make_message(
            mallory,
            "Re: Living with ALS — daily digest, 3 Nov 2026",
            "We tried this too, and it helped my father a lot.\n"
            + "".join(f"> {ADDR.format(t)}\n" for t in threads),
            to=REQUEST,
            message_id=f"m{n}@evil.example",
            headers=vouched,
        )
        assert post(probe, to=[REQUEST]).code == 250
    drain()
    answers = sink.to(mallory)
    assert [str(m["Subject"]) for m in answers] == [
        "Your message was not posted to Living with ALS"
    ] * 3
    assert not [m for m in answers if "Massage therapy?" in m.get_body(("plain",)).get_content()
                or "Massage therapy?" in str(m["Subject"])]
    assert count(db, Held) == 0 and count(db, Post) == 2


def test_words_to_request_that_are_not_a_command_are_quoted_back_with_how_to_post(
    als: str, post: Any, clock: Clock, drain: Any, sink: Sink, db: Database
) -> None:
    clock.now = MONDAY
    words = "Has anyone tried the new walker from the clinic? Ελένη says it folds."
    msg = make_message("Carol Cole <carol@example.com>", "walker", words, to=REQUEST)
    assert post(msg, to=[REQUEST]).code == 250
    short = make_message("Erin Ellis <erin@example.org>", "hello", "hello", to=REQUEST)
    assert post(short, to=[REQUEST]).code == 250
    drain()
    (answer,) = sink.to(CAROL)
    assert answer["Subject"] == "Your message was not posted to Living with ALS"
    body = answer.get_content()
    assert f"> {words}" in body
    assert "send it to living-with-als@lists.example.org" in body
    assert count(db, Post) == 0
    (help_,) = sink.to("erin@example.org")
    assert str(help_["Subject"]).startswith("Help for")


SECTIONS = (digestreply.Section(1, "Massage therapy?"), digestreply.Section(2, RAMPS))
ADDR = "living-with-als+t{}@lists.example.org"


@pytest.mark.parametrize(
    ("subject", "body", "thread"),
    [
        ("Re: digest", f"Yes, see {ADDR.format(2)}", 2),
        ("Re: digest", f"Yes\n> {ADDR.format(1)}\n> {ADDR.format(2)}", None),
        ("Re: digest", f"Yes\n> words\n> Reply to this thread: {ADDR.format(1)}", 1),
        ("Re: digest", f"> one\n> {ADDR.format(1)}\n> two\nMine.\n> {ADDR.format(2)}", 2),
        ("Re: digest", f"> one\nMine.\n> {ADDR.format(1)}\n> {ADDR.format(2)}", 1),
        ("Re: massage THERAPY?", "Yes", 1),
        ("Re: digest", f"Yes\n> {ADDR.format(9)}", None),  # not a thread of that digest
        ("Re: digest", "Yes", None),
    ],
)
def test_which_thread_a_digest_reply_answers(subject: str, body: str, thread: int | None) -> None:
    choice = digestreply.choose(subject, body, ADDR.format("").replace("+t", ""), "[ALS]", SECTIONS)
    assert choice.thread_id == thread, choice.reason


@pytest.mark.parametrize(
    ("text", "is_post"),
    [
        ("hello", False),
        ("thanks so much", False),
        ("Has anyone tried the new walker from the clinic?", True),
        ("Thank you.\n\n> Has anyone tried the new walker from the clinic? It folds.", False),
        ("Ελένη: το νέο αναπηρικό καροτσάκι διπλώνει πολύ εύκολα", True),
    ],
)
def test_looks_like_a_post(text: str, is_post: bool) -> None:
    assert digestreply.looks_like_a_post(text) is is_post


def test_digest_message_ids_and_subjects_are_recognised() -> None:
    assert digestreply.digest_run(("x@y", "digest.12.340@lists.example.org")) == 12
    assert digestreply.digest_run(("digest.x.1@lists.example.org",)) is None
    assert digestreply.is_digest_subject(
        "RE: Living with ALS — daily digest, 3 Nov 2026: 2 new threads", "Living with ALS"
    )
    assert not digestreply.is_digest_subject("Re: Massage therapy?", "Living with ALS")
    raw = b"From: a@b\r\nSubject: =?utf-8?q?old?=\r\n long\r\nTo: c@d\r\n\r\nbody\r\n"
    new = digestreply.with_subject(raw, "Re: Ελένη")
    assert b"old" not in new and new.endswith(b"\r\n\r\nbody\r\n")
    assert email.message_from_bytes(new, policy=email.policy.default)["Subject"] == "Re: Ελένη"


@pytest.mark.parametrize(
    ("body", "number"),
    [
        ("2", 2),
        ("#2 please", 2),
        ("2.", 2),
        ("Number 1\n\n> Which conversation did you mean?", 1),
        ("3", None),  # only two were offered
        ("0", None),
        ("the one about ramps", None),
        ("> 2\nyes", None),
    ],
)
def test_the_number_of_a_conversation_in_a_reply(body: str, number: int | None) -> None:
    assert digestreply.chosen_number(body, 2) == number
