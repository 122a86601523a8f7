"""An owner mends threading: a reply that started a thread of its own is moved where it
belongs, a side discussion is split off, two threads are merged; each act is recorded."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from listserv.store.database import Database
from listserv.store.models import Post, Thread

from .conftest import count, make_message


def thread_of(db: Database, message_id: str) -> int:
    with db.session() as s:
        found = s.scalar(select(Post.thread_id).where(Post.message_id == message_id))
        assert found is not None
        return found


def post_id(db: Database, message_id: str) -> int:
    with db.session() as s:
        found = s.scalar(select(Post.id).where(Post.message_id == message_id))
        assert found is not None
        return found


def test_a_stray_reply_is_moved_split_off_and_merged_back_with_its_history(
    als: str, cli: Any, db: Database, post: Any
) -> None:
    assert (
        post(
            make_message(
                "Alice Archer <alice@example.org>",
                "Eye-gaze devices",
                "Which one?",
                message_id="q1@example.org",
            )
        ).code
        == 250
    )
    # Bob's client dropped In-Reply-To and he changed the subject: a thread of its own
    assert (
        post(
            make_message(
                "Bob Baker <bob@example.net>",
                "Tobii experience",
                "The Tobii.",
                message_id="a1@example.net",
            )
        ).code
        == 250
    )
    question, stray = thread_of(db, "q1@example.org"), thread_of(db, "a1@example.net")
    assert question != stray

    moved = cli(
        "thread",
        "move",
        str(post_id(db, "a1@example.net")),
        "--to",
        str(question),
        "--by",
        "owner@example.org",
    )
    assert moved.exit_code == 0, moved.output
    assert moved.output == f"moved 1 posts into thread {question}\n"
    assert count(db, Thread, Thread.id == stray) == 0  # left empty: gone
    # a later reply to the moved post follows it
    assert (
        post(
            make_message(
                "Dave Dunn <dave@example.org>",
                "Re: Tobii experience",
                "Same here.",
                message_id="d1@example.org",
                in_reply_to="a1@example.net",
            )
        ).code
        == 250
    )
    assert thread_of(db, "d1@example.org") == question
    with db.session() as s:
        assert s.get_one(Thread, question).post_count == 3

    split = cli(
        "thread",
        "split",
        str(post_id(db, "a1@example.net")),
        "--subject",
        "Tobii: ten years on",
        "--by",
        "owner@example.org",
    )
    assert split.exit_code == 0, split.output
    side = thread_of(db, "a1@example.net")
    assert thread_of(db, "d1@example.org") == side != question  # the reply came along
    with db.session() as s:
        assert s.get_one(Thread, side).subject == "Tobii: ten years on"
        assert s.get_one(Thread, side).post_count == 2
        assert s.get_one(Thread, question).post_count == 1

    merged = cli("thread", "merge", str(side), "--into", str(question), "--by", "mod")
    assert merged.exit_code == 0, merged.output
    assert count(db, Thread) == 1

    shown = json.loads(cli("thread", "history", str(question), "--json").stdout)
    assert [
        (e["action"], e["by"], e["from_thread"], e["to_thread"], e["posts"]) for e in shown
    ] == [
        ("move", "owner@example.org", stray, question, 1),
        ("split", "owner@example.org", question, side, 2),
        ("merge", "mod", side, question, 2),
    ]
    text = cli("thread", "history", str(side)).output
    assert "split  2 posts from thread" in text and "Tobii: ten years on" in text


def test_surgery_on_what_does_not_exist_is_one_line(als: str, cli: Any) -> None:
    result = cli("thread", "move", "999", "--to", "1")
    assert (result.exit_code, result.output) == (1, "Error: no such post: 999\n")
    result = cli("thread", "merge", "5", "--into", "6")
    assert (result.exit_code, result.output) == (1, "Error: no such thread: 5\n")
