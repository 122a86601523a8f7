"""One-click unsubscribe (RFC 8058): every post carries the member's own link; POST leaves,
GET never does, and a forged link is refused with a page that names nothing."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

import dkim
import pytest
from sqlalchemy import select

from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Member, MemberEvent

from .conftest import Clock, Sink, make_message
from .test_digest import CAROL, DIGEST_DUE, parts, seed_thread

pytestmark = pytest.mark.both_databases

BASE = "https://lists.example.org"


@pytest.fixture
def web_on(config_data: dict[str, Any]) -> None:
    config_data["web"] = {"host": "127.0.0.1", "port": 0, "base_url": BASE}


def http(server: Server, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    """One request over a real socket; (status, page) also for 4xx answers."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.web_port}{path}", data=body, method=method,
        headers={"Content-Type": "application/x-www-form-urlencoded"} if body else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def members(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Member.address).order_by(Member.id)))


def deliver_one_post(post: Any, drain: Any) -> None:
    msg = make_message("Alice Archer <alice@example.org>", "Hello", "Hello all.",
                       message_id="hello@example.org")
    assert post(msg).code == 250
    drain()


def link_of(sink: Sink, address: str) -> str:
    msg = sink.to(address)[-1]
    match = re.search(rf"<{re.escape(BASE)}(/u/[a-z0-9-]+)>", msg["List-Unsubscribe"])
    assert match is not None, msg["List-Unsubscribe"]
    return match[1]


ONE_CLICK = b"List-Unsubscribe=One-Click"


def test_each_member_gets_their_own_one_click_link(web_on: None, signed: Any,
                                                   als: str, post: Any, drain: Any,
                                                   sink: Sink) -> None:
    deliver_one_post(post, drain)
    # One message per recipient, each with its own link in the header and the footer.
    assert sorted(map(tuple, (r.rcpt_tos for r in sink.received))) == [
        ("bob@example.net",), ("dave@example.org",)]
    paths = {}
    for address in ("bob@example.net", "dave@example.org"):
        (msg,) = sink.to(address)
        value = str(msg["List-Unsubscribe"])
        assert value.startswith(f"<{BASE}/u/u-")
        assert "mailto:living-with-als-leave+u-" in value
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        paths[address] = link_of(sink, address)
        assert f"Leave with one click: {BASE}{paths[address]}" in msg.get_content()
    assert paths["bob@example.net"] != paths["dave@example.org"]
    for received in sink.received:
        assert dkim.verify(received.content, dnsfunc=signed)


def test_post_unsubscribes_at_once_and_again_is_still_success(
    web_on: None, als: str, post: Any, drain: Any, sink: Sink, web_server: Server, db: Database
) -> None:
    deliver_one_post(post, drain)
    path = link_of(sink, "bob@example.net")
    status, page = http(web_server, "POST", path, ONE_CLICK)
    assert status == 200
    assert "You have left Living with ALS" in page
    assert "bob@" not in page  # a forwarded link tells nobody who left
    assert "bob@example.net" not in members(db)
    assert "dave@example.org" in members(db)
    with db.session() as s:
        (event,) = s.scalars(select(MemberEvent)).all()
        assert (event.address, event.kind) == ("bob@example.net", "unsubscribe")
    # Providers may repeat the POST: still a success, nothing else changes.
    assert http(web_server, "POST", path, ONE_CLICK)[0] == 200
    with db.session() as s:
        assert len(s.scalars(select(MemberEvent)).all()) == 1
    # And bob gets no more posts.
    sink.received.clear()
    assert post(make_message("dave@example.org", "Later", "x", message_id="l@x.org")).code == 250
    drain()
    assert sink.to("bob@example.net") == []
    assert len(sink.to("alice@example.org")) == 1


def test_get_shows_a_confirm_page_and_never_unsubscribes(
    web_on: None, als: str, post: Any, drain: Any, sink: Sink, web_server: Server, db: Database
) -> None:
    deliver_one_post(post, drain)
    path = link_of(sink, "dave@example.org")
    for _ in range(3):  # a link scanner, a preview, the person
        status, page = http(web_server, "GET", path)
        assert status == 200
        # No action: the button posts to this very URL, whatever proxy prefix it has.
        assert '<form method="post">' in page
        assert 'name="List-Unsubscribe" value="One-Click"' in page
        assert "Leave Living with ALS?" in page and "dave@" not in page
    assert "dave@example.org" in members(db)
    # The button posts the same form a provider sends.
    assert http(web_server, "POST", path, ONE_CLICK)[0] == 200
    assert "dave@example.org" not in members(db)
    status, page = http(web_server, "GET", path)
    assert status == 200 and "no longer subscribed to Living with ALS" in page
    assert "dave@" not in page


def test_post_without_the_one_click_body_changes_nothing(
    web_on: None, als: str, post: Any, drain: Any, sink: Sink, web_server: Server, db: Database
) -> None:
    deliver_one_post(post, drain)
    path = link_of(sink, "dave@example.org")
    assert http(web_server, "POST", path, b"")[0] == 400
    assert http(web_server, "POST", path, b"List-Unsubscribe=Yes")[0] == 400
    assert "dave@example.org" in members(db)


def test_forged_or_foreign_tokens_are_refused_revealing_nothing(
    web_on: None, als: str, cli: Any, post: Any, drain: Any, sink: Sink, web_server: Server,
    db: Database
) -> None:
    deliver_one_post(post, drain)
    path = link_of(sink, "dave@example.org")
    token = path.rsplit("/", 1)[1]
    kind, ident, expires, sig = token.split("-")
    bob_ident = link_of(sink, "bob@example.net").rsplit("/", 1)[1].split("-")[1]
    forged = [
        f"{kind}-{ident}-{expires}-{'a' * 16}",                # signature made up
        f"{kind}-{bob_ident}-{expires}-{sig}",                 # dave's signature, bob's id
        f"j-{ident}-{expires}-{sig}",                          # another kind of token
        "nonsense", "u-99999-0-" + "b" * 16,
    ]
    pages = set()
    for bad in forged:
        for method, body in (("GET", None), ("POST", ONE_CLICK)):
            status, page = http(web_server, method, f"/u/{bad}", body)
            assert status == 404, (bad, method)
            assert "Living with ALS" not in page and "example" not in page
            pages.add(page)
    assert len(pages) == 1  # the same page whatever was wrong
    assert members(db) == ["alice@example.org", "bob@example.net", "carol@example.com",
                           "dave@example.org", "erin@example.org"]


def test_without_base_url_posts_carry_only_a_mailto(als: str, post: Any, drain: Any,
                                                    sink: Sink) -> None:
    deliver_one_post(post, drain)
    (msg,) = sink.to("dave@example.org")
    # The member's own leave address, and nothing to POST to.
    assert msg["List-Unsubscribe"].startswith("<mailto:living-with-als-leave+")
    assert "http" not in msg["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] is None
    assert "one click" not in msg.get_content()


def test_unsubscribing_drops_posts_still_waiting_for_the_member(
    web_on: None, als: str, post: Any, drain: Any, sink: Sink, web_server: Server, clock: Any
) -> None:
    deliver_one_post(post, drain)
    path = link_of(sink, "dave@example.org")
    # Dave's server defers the next post; he unsubscribes before the retry.
    sink.rcpt_replies["dave@example.org"] = "451 4.3.0 Try later"
    assert post(make_message("alice@example.org", "Next", "x", message_id="n@x.org")).code == 250
    drain()
    assert http(web_server, "POST", path, ONE_CLICK)[0] == 200
    del sink.rcpt_replies["dave@example.org"]
    sink.received.clear()
    clock.advance(hours=1)
    drain()
    assert sink.to("dave@example.org") == []


def test_a_digest_reader_gets_the_same_personal_one_click_link_and_it_works(
    web_on: None, signed: Any, als: str, post: Any, clock: Clock, scheduler: Any,
    drain: Any, sink: Sink, web_server: Server, db: Database
) -> None:
    """A digest is bulk mail: Carol's copy carries her own one-click link in the signed
    header and in both footers, as a post copy does, and one POST of it lets her go."""
    seed_thread(post, clock)
    clock.now = DIGEST_DUE
    scheduler()
    drain()
    (received,) = [r for r in sink.received if CAROL in r.rcpt_tos
                   and "daily digest" in str(r.message["Subject"])]
    assert dkim.verify(received.content, dnsfunc=signed)
    digest_copy = received.message
    value = str(digest_copy["List-Unsubscribe"])
    assert value.startswith(f"<{BASE}/u/u-")
    assert "mailto:living-with-als-leave+u-" in value
    assert digest_copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = link_of(sink, CAROL)
    text, html = parts(digest_copy)
    assert f"Leave with one click: {BASE}{path}" in text
    assert f'href="{BASE}{path}"' in html
    # A post copy for Bob carries a link of its own, never Carol's.
    assert path not in str(sink.to("bob@example.net")[0]["List-Unsubscribe"])
    assert http(web_server, "POST", path, ONE_CLICK)[0] == 200
    assert CAROL not in members(db)
