"""Every message of the shared MIME corpus goes through the real receiver: it is stored
correctly or refused with a precise code, and never crashes the server (a 451 here would
mean an unexpected error and an emergency copy)."""

from __future__ import annotations

import email
import json
import time
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from listserv.admin.lists import add_member, find_member, require_list
from listserv.config import LimitsConfig
from listserv.core.headers import decode_bytes
from listserv.core.message import Parsed, parse
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Post

from .conftest import LIST, make_message, smtp_send
from .corpus import corpus_dir, corpus_files

MESSAGES = corpus_files("mime", "*.eml")
# Automatic mail in the corpus, which we accept and never post (RFC 3834): DSNs and bulk.
ROBOTS = {
    "cpython_msg_25",  # a DSN (Auto-Submitted: auto-generated)
    "cpython_msg_32",  # Precedence: bulk
    "mailparser_mail_malformed_2",  # a DSN (multipart/report)
    "mailparser_mail_test_16",  # Precedence: junk (GTUBE spam test)
}


def normalise(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def expectations(path: Path) -> dict[str, Any]:
    expected = path.with_suffix(".expected.json")
    return json.loads(expected.read_text()) if expected.exists() else {}


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.stem)
def test_corpus_message_is_stored_or_refused_precisely(
        path: Path, als: str, receiver: Server, db: Database, config: Any) -> None:
    corpus_dir("mime")
    raw = path.read_bytes()
    expected = expectations(path)
    parsed = parse(raw, LimitsConfig())
    sender = "someone@example.org"
    if isinstance(parsed, Parsed) and parsed.author_address:
        sender = parsed.author_address
        with db.session() as s:  # a member, so the message is posted, not held
            ml = require_list(s, LIST, config.lists.domain)
            if find_member(s, ml, sender) is None:
                add_member(s, ml, sender, "", "each", ml.created_at)
    start = time.monotonic()
    reply = smtp_send(receiver.port, sender, [LIST], raw)
    assert time.monotonic() - start < 10.0  # a guard against pathological parsing, not a speed
    assert reply.code != 451, f"unexpected error: {reply.text}"
    if expected.get("reject") == "no_sender_address":
        assert (reply.code, reply.text[:5]) == (550, "5.6.0")
        return
    if reply.code != 250:
        # A refusal must be precise: 5xx with an enhanced status code.
        assert reply.code >= 500 and reply.text[1:2] == "." , reply.text
        return
    with db.session() as s:
        post = s.scalar(select(Post).order_by(Post.id.desc()).limit(1))
    if post is None:
        # Not posted: only automatic mail (a DSN, Precedence: junk) is accepted and dropped.
        assert reply.text == "2.0.0 Message accepted", reply.text
        assert path.stem in ROBOTS, f"{path.stem} was dropped as automatic mail"
        return
    if "subject" in expected:
        assert post.subject == (expected["subject"] or "")
    if expected.get("from_address"):
        assert post.author_address == expected["from_address"]
    if expected.get("from_name"):
        assert post.author_name == expected["from_name"]
    if "body_text" in expected:
        # Undecodable bytes: the corpus writes '?', we keep U+FFFD (also a replacement).
        assert normalise(expected["body_text"]) in normalise(post.body).replace("\ufffd", "?")
    if "message_id" in expected:
        assert post.message_id == expected["message_id"]
    for part in expected.get("subject_contains", []):
        assert part in post.subject


# Replies from Outlook, Hotmail, AOL and Gmail, whose HTML nests <div>s.
NESTED_DIVS = [path for name in ("outlook", "hotmail", "aol", "gmail")
               for path in corpus_files("replies", f"talon_{name}.eml")]


def html_parts() -> list[tuple[str, str]]:
    """The HTML of every corpus message above, and of the replies with nested <div>s."""
    found = []
    for path in [*MESSAGES, *NESTED_DIVS]:
        msg = email.message_from_bytes(path.read_bytes(), policy=compat32)
        for part in msg.walk():
            data = part.get_payload(decode=True)
            if part.get_content_type() == "text/html" and isinstance(data, bytes):
                found.append((path.stem, decode_bytes(data, part.get_content_charset())))
    return found


HTML_PARTS = html_parts()


@pytest.mark.parametrize("html", [h for _name, h in HTML_PARTS],
                         ids=[name for name, _h in HTML_PARTS])
def test_html_only_posts_are_stored_flush_left(html: str, als: str, post: Any,
                                               db: Database) -> None:
    # Outlook Web Access and many phones send HTML alone; nested <div>s are no indentation.
    msg = make_message("alice@example.org", "From my phone", "", message_id="html@x")
    msg.set_content(html, subtype="html")
    assert post(msg).code == 250
    with db.session() as s:
        body = s.scalar(select(Post.body))
    assert body.strip()
    indented = [line for line in body.splitlines() if line[:1] in (" ", "\t")]
    assert indented == []
