"""Replies land in the right thread, whatever the mail client sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from listserv.core import threads
from listserv.store.database import Database
from listserv.store.models import Post

from .conftest import Clock, make_message

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("subject", "prefix", "key", "is_reply"),
    [
        ("Massage therapy?", "", "massage therapy?", False),
        ("Re: Massage therapy?", "", "massage therapy?", True),
        ("RE: re:  Massage   therapy?", "", "massage therapy?", True),
        ("Fwd: Massage therapy?", "", "massage therapy?", True),
        ("AW: Massage therapy?", "", "massage therapy?", True),
        ("SV: Massage therapy?", "", "massage therapy?", True),
        ("Re[2]: Massage therapy?", "", "massage therapy?", True),
        ("[Living with ALS] Re: Massage therapy?", "[Living with ALS]", "massage therapy?", True),
        ("Re: [living with als] Massage therapy?", "[Living with ALS]", "massage therapy?", True),
        ("Regarding massage", "", "regarding massage", False),
        ("Area: massage", "", "area: massage", False),
    ],
)
def test_subject_keys_ignore_markers_and_prefix(
    subject: str, prefix: str, key: str, is_reply: bool
) -> None:
    assert threads.subject_key(subject, prefix) == key
    assert threads.split_markers(subject, prefix)[0] is is_reply


def test_parent_wins_over_subject_and_tag() -> None:
    choice = threads.choose(("b@x", "a@x"), {"a@x": (1, 10)}, "Re: Other", "", (20, NOW), NOW, 30)
    assert (choice.thread_id, choice.parent_post_id) == (10, 1)


def test_in_reply_to_is_tried_before_references() -> None:
    known = {"irt@x": (2, 11), "ref@x": (1, 10)}
    choice = threads.choose(("irt@x", "ref@x"), known, "x", "", None, NOW)
    assert choice.thread_id == 11


def test_subject_fallback_needs_a_reply_marker_and_a_recent_thread() -> None:
    recent = (7, NOW - timedelta(days=29))
    old = (7, NOW - timedelta(days=31))
    assert threads.choose((), {}, "Re: Hello", "", recent, NOW).thread_id == 7
    assert threads.choose((), {}, "Hello", "", recent, NOW).thread_id is None
    assert threads.choose((), {}, "Re: Hello", "", old, NOW).thread_id is None


def thread_of(db: Database, message_id: str) -> int:
    with db.session() as s:
        return s.scalar(select(Post.thread_id).where(Post.message_id == message_id))


def test_reply_with_only_references_joins_the_thread(als: str, post: Any, db: Database) -> None:
    post(make_message("alice@example.org", "Massage?", "q", message_id="q@x.org"))
    post(make_message("bob@example.net", "Re: Massage?", "a1", message_id="a1@x.org",
                      in_reply_to="q@x.org"))
    # A client that drops In-Reply-To but keeps References, newest last.
    post(make_message("dave@example.org", "Different words", "a2", message_id="a2@x.org",
                      references="<q@x.org> <unknown@elsewhere> <a1@x.org>"))
    assert thread_of(db, "a2@x.org") == thread_of(db, "q@x.org")
    with db.session() as s:
        parent = s.scalar(select(Post.parent_id).where(Post.message_id == "a2@x.org"))
        a1 = s.scalar(select(Post.id).where(Post.message_id == "a1@x.org"))
    assert parent == a1


def test_reply_with_unknown_parent_joins_by_subject(als: str, post: Any, db: Database) -> None:
    post(make_message("alice@example.org", "Massage therapy?", "q", message_id="q@x.org"))
    post(make_message("bob@example.net", "RE: [Living with ALS] massage therapy?", "a",
                      message_id="a@x.org", in_reply_to="lost@elsewhere"))
    assert thread_of(db, "a@x.org") == thread_of(db, "q@x.org")


def test_unrelated_subject_starts_a_new_thread(als: str, post: Any, db: Database) -> None:
    post(make_message("alice@example.org", "Massage therapy?", "q", message_id="q@x.org"))
    post(make_message("bob@example.net", "Wheelchair ramps", "n", message_id="n@x.org"))
    post(make_message("dave@example.org", "Massage therapy?", "not a reply",
                      message_id="same@x.org"))
    ids = {thread_of(db, m) for m in ("q@x.org", "n@x.org", "same@x.org")}
    assert len(ids) == 3


def test_subject_fallback_stops_after_thirty_days(
    als: str, post: Any, db: Database, clock: Clock
) -> None:
    post(make_message("alice@example.org", "Massage therapy?", "q", message_id="q@x.org"))
    clock.advance(days=31)
    post(make_message("bob@example.net", "Re: Massage therapy?", "late", message_id="l@x.org"))
    assert thread_of(db, "l@x.org") != thread_of(db, "q@x.org")


def test_reply_address_of_a_thread_threads_without_headers(
    als: str, post: Any, db: Database
) -> None:
    post(make_message("alice@example.org", "Massage therapy?", "q", message_id="q@x.org"))
    thread = thread_of(db, "q@x.org")
    tagged = f"living-with-als+t{thread}@lists.example.org"
    reply = post(make_message("bob@example.net", "Digest reply", "yes", message_id="t@x.org",
                              to=tagged), to=[tagged])
    assert reply.code == 250
    assert thread_of(db, "t@x.org") == thread


@pytest.mark.parametrize("tag", ["t999999", "tx", "zz"])
def test_bad_reply_tag_is_a_plain_post(als: str, post: Any, db: Database, tag: str) -> None:
    address = f"living-with-als+{tag}@lists.example.org"
    reply = post(make_message("bob@example.net", "Hello", "hi", message_id="h@x.org"),
                 to=[address])
    assert reply.code == 250
    assert thread_of(db, "h@x.org") is not None
