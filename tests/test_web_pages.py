"""The archive on the web, read over real HTTP: a member signs in by the link we mail,
reads the seed thread, its quoted text folded away; nobody else sees a members-only list."""

from __future__ import annotations

from typing import Any

from listserv.server import Server

from .conftest import LIST, Sink, make_message
from .web import Client, sign_in

QUESTION = "Does massage therapy help to maintain overall function and muscle strength?"
ANSWER = (
    "It helped me a lot: twice a week, gentle, with a therapist who knew ALS.\n\n"
    "On Fri, 27 Nov 2026, Alice Archer <alice@example.org> wrote:\n> " + QUESTION + "\n"
)


def seed_thread(post: Any) -> None:
    """The community's real thread: Alice asks, Bob answers quoting her."""
    question = make_message(
        "Alice Archer <alice@example.org>",
        "Does massage therapy help to maintain overall function and muscle strength?",
        QUESTION,
        message_id="q@example.org",
    )
    assert post(question).code == 250
    answer = make_message(
        "Bob Baker <bob@example.net>",
        "Re: [Living with ALS] Does massage therapy help to maintain overall "
        "function and muscle strength?",
        ANSWER,
        message_id="a@example.net",
        in_reply_to="q@example.org",
    )
    assert post(answer).code == 250


def test_a_member_signs_in_by_the_mailed_link_and_reads_the_seed_thread(
    als: str, post: Any, drain: Any, sink: Sink, web_server: Server
) -> None:
    seed_thread(post)
    drain()
    browser = Client(web_server.web_port)
    assert "Sign in" in browser.get("/").text
    done = sign_in(browser, sink, drain, "carol@example.com")
    assert done.status == 303 and done.headers["Location"] == "/"

    lists = browser.get("/")
    assert "Living with ALS" in lists.text and "5 members" in lists.text
    threads = browser.get("/living-with-als/")
    assert threads.status == 200
    assert "Does massage therapy help to maintain overall function" in threads.text
    assert "Started by Alice Archer · 2 members · 1 reply" in threads.text
    assert threads.headers["X-Robots-Tag"] == "noindex, nofollow"

    page = browser.get("/living-with-als/t/1")
    assert page.status == 200
    assert "2 members · 1 reply" in page.text
    assert "Alice Archer" in page.text and "Bob Baker" in page.text
    assert "27 Nov 2026, 09:00" in page.text
    # Bob's own words are shown; the quote of Alice is folded away behind <details>.
    shown, _, folded = page.text.partition("<details>")
    assert "It helped me a lot" in shown
    assert "<summary>Show quoted text</summary>" in folded
    assert "&gt; Does massage therapy" in folded
    # Addresses never appear, the list's own reply address does.
    assert "alice@example.org" not in page.text and "bob@example.net" not in page.text
    assert "alice@…" in folded
    assert (
        'href="mailto:living-with-als+t1@lists.example.org?subject=Re%3A%20Does%20massage'
        in page.text
    )


def test_a_members_only_list_shows_only_the_sign_in_page_to_others(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any, web_server: Server
) -> None:
    seed_thread(post)
    stranger = Client(web_server.web_port)
    for path in (
        "/living-with-als/",
        "/living-with-als/t/1",
        "/living-with-als/t/1.mbox",
        "/living-with-als/p/1",
        "/living-with-als/search?q=massage",
        "/living-with-als/feed.atom",
        "/living-with-als/a/1/1",
        "/no-such-list/",
    ):
        page = stranger.get(path)
        assert page.status == 403, path
        assert "<h1>Sign in</h1>" in page.text and "massage" not in page.text.lower(), path
        assert page.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert "Living with ALS" not in stranger.get("/").text

    # Signed in, a member of another list only finds nothing here.
    assert cli("lists", "create", "carers", "--title", "Carers").exit_code == 0
    assert cli("members", "add", "carers", "frank@example.org").exit_code == 0
    frank = Client(web_server.web_port)
    sign_in(frank, sink, drain, "frank@example.org")
    assert frank.get("/living-with-als/t/1").status == 404
    assert frank.get("/carers/").status == 200


def test_a_public_list_is_readable_signed_out_and_may_be_indexed(
    als: str, post: Any, cli: Any, web_server: Server
) -> None:
    seed_thread(post)
    result = cli("lists", "set", LIST, "--archive", "public")
    assert result.exit_code == 0, result.output
    assert "archive=public" in result.output
    reader = Client(web_server.web_port)
    assert "Living with ALS" in reader.get("/").text
    page = reader.get("/living-with-als/t/1")
    assert page.status == 200 and "2 members · 1 reply" in page.text
    assert "X-Robots-Tag" not in page.headers
    for path in (
        "/living-with-als/t/99999999999",
        "/living-with-als/p/99999999999",
        "/living-with-als/t/99999999999.mbox",
        "/living-with-als/a/99999999999/1",
        "/living-with-als/t/2",
        "/living-with-als/p/3",
    ):
        assert reader.get(path).status == 404, path
    assert cli("lists", "set", LIST, "--archive", "none").exit_code == 0
    assert reader.get("/living-with-als/t/1").status == 403
    assert "Living with ALS" not in reader.get("/").text


def test_owners_and_moderators_see_how_many_messages_wait(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any, web_server: Server
) -> None:
    assert cli("lists", "set", LIST, "--owner", "olive@example.org").exit_code == 0
    stranger = make_message(
        "Stranger <stranger@example.com>", "Hello", "Hi all.", message_id="s@example.com"
    )
    assert post(stranger).code == 250  # held: not a member
    olive = Client(web_server.web_port)
    sign_in(olive, sink, drain, "olive@example.org")
    assert "1 message waiting for a moderator" in olive.get("/living-with-als/").text
    bob = Client(web_server.web_port)
    sign_in(bob, sink, drain, "bob@example.net")
    page = bob.get("/living-with-als/")
    assert page.status == 200 and "waiting for a moderator" not in page.text
