"""The shared bounce and auto-reply corpus through the real receiver: a DSN at a member's
signed VERP address scores that member; at the plain bounce address, which anyone can
write to, a report that returns no copy we sent scores nobody; no DSN or auto-reply is
ever posted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from listserv.admin.lists import add_member, find_member, require_list
from listserv.core import verp
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Bounce, Post
from listserv.store.settings import token_secret

from .conftest import LIST, count, smtp_send
from .corpus import corpus_dir, corpus_files
from .test_bounces import KNOWN_MISSES

BOUNCES = corpus_files("bounces", "*.eml")
AUTO = corpus_files("auto", "*.eml")
PLAIN_BOUNCES = "living-with-als-bounces@lists.example.org"


def expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))


def add_named(db: Database, config: Any, named: set[str]) -> bytes:
    """Make every address the report names a member; the token secret."""
    with db.session() as s:
        ml = require_list(s, LIST, config.lists.domain)
        for address in named:
            if find_member(s, ml, address) is None:
                add_member(s, ml, address, "", "each", ml.created_at)
        return token_secret(s, config)


@pytest.mark.parametrize("path", BOUNCES, ids=lambda p: p.stem)
def test_bounce_at_the_members_verp_addresses_scores_them(
        path: Path, als: str, receiver: Server, db: Database, config: Any) -> None:
    corpus_dir("bounces")
    want = expected(path)
    named = {r["address"].lower() for r in want["recipients"]}
    secret = add_named(db, config, named)
    verps = [verp.encode(PLAIN_BOUNCES, address, secret) for address in sorted(named)]
    reply = smtp_send(receiver.port, "", verps or [PLAIN_BOUNCES], path.read_bytes())
    assert reply.code == 250, reply.text
    assert count(db, Post) == 0
    with db.session() as s:
        scored = {a.lower() for a in s.scalars(select(Bounce.address))}
    if want["is_bounce"] and path.stem not in KNOWN_MISSES:
        assert scored == named
    assert scored <= named  # never a member the report does not name


@pytest.mark.parametrize("path", BOUNCES, ids=lambda p: p.stem)
def test_bounce_at_the_plain_bounce_address_without_our_copy_scores_nobody(
        path: Path, als: str, receiver: Server, db: Database, config: Any) -> None:
    corpus_dir("bounces")
    add_named(db, config, {r["address"].lower() for r in expected(path)["recipients"]})
    reply = smtp_send(receiver.port, "", [PLAIN_BOUNCES], path.read_bytes())
    assert reply.code == 250, reply.text
    assert count(db, Post) == 0
    assert count(db, Bounce) == 0


@pytest.mark.parametrize("path", BOUNCES + AUTO, ids=lambda p: p.stem)
def test_dsn_or_auto_reply_sent_to_the_list_is_never_posted(
        path: Path, als: str, receiver: Server, db: Database) -> None:
    corpus_dir(path.parent.name)
    want = expected(path)
    reply = smtp_send(receiver.port, "alice@example.org", [LIST], path.read_bytes())
    assert reply.code in (250, 550), reply.text  # 550 5.6.0: no usable From at all
    if want.get("should_post") or (path.parent.name == "bounces" and not want["is_bounce"]):
        return  # ordinary mail: posting or holding it is right
    assert count(db, Post) == 0
