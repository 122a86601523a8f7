"""MIME nested beyond the limit, in every spelling of a boundary, is refused at once with a
permanent 554: no retry loop, no emergency copy, no delay for the posts of real members."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from listserv.config import Config
from listserv.core.replies import Outcome
from listserv.inbound import dispatch
from listserv.store.database import Database
from listserv.store.models import Post

from .conftest import LIST, count, make_message

# RFC 2231 lets a parameter be split (boundary*0=) or charset-encoded (boundary*=); the
# parser honours every spelling, so the nesting limit must too.
SPELLINGS = [
    b"boundary=",
    b"boundary*=",
    b"boundary*0=",
    b"boundary*0*=",
    b"BOUNDARY*=",
    b"boundary*00*=",
]


def nested(
    levels: int,
    spelling: bytes = b"boundary=",
    *,
    message_id: str = "deep@x",
    leaf: bytes = b"hello from the bottom",
    digest: bool = False,
) -> bytes:
    """A message whose multiparts nest `levels` deep, each declaring its boundary with
    `spelling`; with `digest`, every other level is a message/rfc822 without a header."""
    body = leaf + b"\r\n"
    for i in range(levels, 0, -1):
        boundary = b"b%d" % i
        kind = b"digest" if digest else b"mixed"
        body = (
            b"Content-Type: multipart/" + kind + b"; " + spelling + boundary + b"\r\n\r\n"
            b"--"
            + boundary
            + b"\r\n"
            + (b"\r\n" if digest else b"")
            + body
            + b"\r\n--"
            + boundary
            + b"--\r\n"
        )
    return (
        b"From: Mallory <mallory@example.org>\r\nTo: " + LIST.encode() + b"\r\n"
        b"Subject: deep\r\nMessage-ID: <" + message_id.encode() + b">\r\n"
        b"MIME-Version: 1.0\r\n" + body
    )


def emergency_copies(config: Config) -> list[Path]:
    folder = config.base_dir / "var" / "emergency"
    return [
        p
        for sub in ("new", "cur", "tmp")
        if (folder / sub).is_dir()
        for p in (folder / sub).iterdir()
    ]


@pytest.fixture
def mallory(cli: Any, als: str) -> str:
    """Mallory is a member: her posts reach the parser and the writer, not the policy."""
    assert cli("members", "add", LIST, "mallory@example.org").exit_code == 0
    return "mallory@example.org"


@pytest.mark.parametrize("spelling", SPELLINGS, ids=lambda s: s.decode())
def test_a_thousand_levels_in_any_spelling_get_554_and_no_emergency_copy(
    mallory: str, post: Any, db: Database, config: Config, spelling: bytes
) -> None:
    start = time.monotonic()
    reply = post(nested(1000, spelling), sender=mallory)
    elapsed = time.monotonic() - start
    assert (reply.code, reply.text[:5]) == (554, "5.6.0"), reply.text
    assert elapsed < 2.0  # refused while walking, not after a deep recursion
    assert count(db, Post) == 0
    assert emergency_copies(config) == []


def test_nesting_is_counted_by_walking_not_by_counting_declarations(
    mallory: str, post: Any, db: Database, config: Config
) -> None:
    # A multipart/digest's parts are messages by default: the nesting doubles without a
    # single Content-Type: message/... line to count.
    assert post(nested(15, digest=True), sender=mallory).text[:5] == "5.6.0"
    # Talking about MIME is no nesting: a post that quotes many boundary= lines is stored.
    lecture = make_message(
        mallory,
        "How MIME works",
        "\n".join(f'Content-Type: multipart/mixed; boundary="b{i}"' for i in range(40)),
        message_id="lecture@x",
    )
    assert post(lecture).code == 250
    assert count(db, Post) == 1


def test_real_nesting_within_the_limit_in_rfc2231_spelling_is_stored(
    mallory: str, post: Any, db: Database
) -> None:
    reply = post(nested(5, b"boundary*0*=", leaf=b"five levels down"), sender=mallory)
    assert reply.code == 250, reply.text
    with db.session() as s:
        assert s.scalar(select(Post.body)) == "five levels down"


@pytest.fixture
def careless_limits(config_data: dict[str, Any]) -> None:
    """An operator who raised the nesting limit far past what the parser can recurse."""
    config_data["limits"] = {"max_mime_depth": 5000}


def test_a_parser_failure_is_a_554_verdict_not_a_retry_loop(
    careless_limits: None, mallory: str, post: Any, db: Database, config: Config
) -> None:
    # Past the limit check, Python's recursive MIME parser gives up (RecursionError):
    # the same bytes would fail on every retry, so the verdict is permanent.
    for _attempt in range(3):
        reply = post(nested(1000, b"boundary*="), sender=mallory)
        assert (reply.code, reply.text[:5]) == (554, "5.6.0"), reply.text
    assert emergency_copies(config) == []
    # The writer goes on serving real members at once.
    assert (
        post(make_message("alice@example.org", "Still here", "yes", message_id="ok@x")).code == 250
    )
    assert count(db, Post) == 1


@pytest.fixture
def small_emergency(config_data: dict[str, Any]) -> None:
    config_data["limits"] = {"max_emergency_copies": 3, "max_emergency_bytes": 300_000}


def test_emergency_copies_are_capped_in_count_and_bytes(
    small_emergency: None, als: str, post: Any, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*args: Any) -> Outcome:
        raise RuntimeError("a bug in ingest")

    # Fault injection: a bug nobody planned for meets every message.
    monkeypatch.setitem(dispatch.HANDLERS, "posts", bug)
    big = make_message("alice@example.org", "Big", "words " * 40_000, message_id="big@x")
    for _attempt in range(2):  # 240 KB each: the second would pass the byte cap
        assert post(big).code == 451
    assert len(emergency_copies(config)) == 1
    for i in range(5):  # small ones: three copies at most
        small = make_message("alice@example.org", "Small", f"retry {i}", message_id=f"s{i}@x")
        assert post(small).text[:5] == "4.3.0"  # still a 451: the client keeps the message
    copies = emergency_copies(config)
    assert len(copies) == 3
    assert sum(p.stat().st_size for p in copies) <= 300_000
