"""The shared bounce and auto-reply corpus through the real receiver: a DSN at the list's
bounce address scores only the members it names; no DSN or auto-reply is ever posted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from listserv.admin import add_member, find_member, require_list
from listserv.db import Database
from listserv.models import Bounce, Post
from listserv.server import Server

from .conftest import LIST, count, smtp_send
from .corpus import corpus_dir, corpus_files

BOUNCES = corpus_files("bounces", "*.eml")
AUTO = corpus_files("auto", "*.eml")
PLAIN_BOUNCES = "living-with-als-bounces@lists.example.org"


def expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", BOUNCES, ids=lambda p: p.stem)
def test_bounce_at_the_bounce_address_scores_only_named_members(
        path: Path, als: str, receiver: Server, db: Database, config: Any) -> None:
    corpus_dir("bounces")
    want = expected(path)
    named = {r["address"].lower() for r in want["recipients"]}
    with db.session() as s:
        ml = require_list(s, LIST, config.lists.domain)
        for address in named:
            if find_member(s, ml, address) is None:
                add_member(s, ml, address, "", "each", ml.created_at)
    reply = smtp_send(receiver.port, "", [PLAIN_BOUNCES], path.read_bytes())
    assert reply.code == 250, reply.text
    assert count(db, Post) == 0
    with db.session() as s:
        scored = {a.lower() for a in s.scalars(select(Bounce.address))}
    assert scored <= named  # never a member the report does not name
    if not want["is_bounce"]:
        assert scored == set()


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
