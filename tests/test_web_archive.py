"""Links into the archive: every copy names its post's permalink (Archived-At) and the
list's page (List-Archive); permalinks land on the post; a thread downloads as an mbox;
each list has an Atom feed; long lists page; pages stay small."""

from __future__ import annotations

import email
import mailbox
import xml.etree.ElementTree as ET
from email import policy
from pathlib import Path
from typing import Any

import pytest

from listserv.server import Server

from .conftest import LIST, Sink, make_message
from .test_web_pages import seed_thread
from .web import Client

BASE = "https://lists.example.org"
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def base_url(config_data: dict[str, Any]) -> None:
    config_data["web"]["base_url"] = BASE


def test_every_copy_links_its_post_and_the_list_archive(
    base_url: None, als: str, post: Any, drain: Any, sink: Sink, cli: Any, web_server: Server
) -> None:
    seed_thread(post)
    drain()
    (question, answer) = sink.to("dave@example.org")
    assert question["Archived-At"] == f"<{BASE}/living-with-als/p/1>"
    assert answer["Archived-At"] == f"<{BASE}/living-with-als/p/2>"
    assert question["List-Archive"] == f"<{BASE}/living-with-als/>"
    assert f"Archive: {BASE}/living-with-als/" in question.get_content()
    # The permalink leads to the post in its thread.
    assert cli("lists", "set", LIST, "--archive", "public").exit_code == 0
    jump = Client(web_server.web_port).get("/living-with-als/p/2")
    assert jump.status == 303 and jump.headers["Location"] == "/living-with-als/t/1#p2"
    assert 'id="p2"' in Client(web_server.web_port).get("/living-with-als/t/1").text


def test_a_list_without_a_web_archive_names_none(
    base_url: None, als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    assert cli("lists", "set", LIST, "--archive", "none").exit_code == 0
    forged = make_message(
        "Alice Archer <alice@example.org>",
        "Hello",
        "Hi.",
        message_id="h@example.org",
        headers={"Archived-At": "<https://evil.example/p/1>"},
    )
    assert post(forged).code == 250
    drain()
    (copy,) = sink.to("dave@example.org")
    assert copy["Archived-At"] is None and copy["List-Archive"] is None


def test_a_thread_downloads_as_an_mbox_and_the_list_has_a_feed(
    als: str, post: Any, cli: Any, web_server: Server, tmp_path: Path
) -> None:
    seed_thread(post)
    from_line = make_message(
        "Carol Cole <carol@example.com>",
        "Re: massage",
        "From my experience: yes.\n",
        message_id="c@example.com",
        in_reply_to="a@example.net",
    )
    assert post(from_line).code == 250
    assert cli("lists", "set", LIST, "--archive", "public").exit_code == 0
    reader = Client(web_server.web_port)
    download = reader.get("/living-with-als/t/1.mbox")
    assert download.status == 200
    assert download.headers["Content-Type"] == "application/mbox"
    path = tmp_path / "thread.mbox"
    path.write_bytes(download.body)
    messages = list(mailbox.mbox(str(path)))
    assert [m["Message-ID"] for m in messages] == [
        "<q@example.org>",
        "<a@example.net>",
        "<c@example.com>",
    ]
    # mboxrd: a body line starting "From " is quoted, so it cannot split the message.
    assert messages[2].get_payload() == ">From my experience: yes.\n"

    feed = reader.get("/living-with-als/feed.atom")
    assert feed.headers["Content-Type"].startswith("application/atom+xml")
    root = ET.fromstring(feed.body)
    assert root.findtext(f"{ATOM}title") == "Living with ALS"
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 3
    assert entries[0].findtext(f"{ATOM}author/{ATOM}name") == "Carol Cole"
    assert entries[-1].findtext(f"{ATOM}content").startswith("Does massage therapy")
    assert entries[0].find(f"{ATOM}link").get("href").endswith("/living-with-als/p/3")


def test_the_mbox_download_names_nobody_by_address_as_the_pages_do(
    als: str, post: Any, cli: Any, web_server: Server, tmp_path: Path
) -> None:
    """A public list's mbox is for anyone on the internet: it shows each poster as the
    pages do (their name, no address), yet threads in a mail program and keeps files."""
    seed_thread(post)
    reply = make_message(
        "Carol Cole <carol@example.com>",
        "Re: massage (ask dan@example.com too)",
        "Write to me at carol.cole@example.com, or to the list at living-with-als@"
        "lists.example.org.\n",
        message_id="c@example.com",
        in_reply_to="a@example.net",
        headers={"Cc": "Dan Day <dan@example.com>", "Reply-To": "carol@example.com"},
    )
    reply.add_attachment(b"exercise plan", maintype="application", subtype="pdf",
                         filename="bob@example.net plan.pdf")
    assert post(reply).code == 250
    assert cli("lists", "set", LIST, "--archive", "public").exit_code == 0

    download = Client(web_server.web_port).get("/living-with-als/t/1.mbox")
    assert download.status == 200
    for address in (b"alice@example.org", b"bob@example.net", b"carol@example.com",
                    b"carol.cole@example.com", b"dan@example.com"):
        assert address not in download.body
    path = tmp_path / "thread.mbox"
    path.write_bytes(download.body)
    question, answer, carol = (
        email.message_from_bytes(m.as_bytes(), policy=policy.default)
        for m in mailbox.mbox(str(path))
    )
    assert question["From"].addresses[0].display_name == "Alice Archer"
    assert carol["From"].addresses[0].addr_spec == LIST
    assert carol["Subject"] == "Re: massage (ask dan@… too)"
    assert carol["Cc"] is None and carol["Reply-To"] is None
    assert (answer["In-Reply-To"], carol["In-Reply-To"]) == ("<q@example.org>", "<a@example.net>")
    text = carol.get_body(("plain",)).get_content()
    assert "carol.cole@…," in text and "living-with-als@lists.example.org" in text
    (plan,) = carol.iter_attachments()
    assert plan.get_filename() == "bob@… plan.pdf"
    assert plan.get_content() == b"exercise plan"


def test_threads_page_and_a_long_thread_stays_small(
    als: str, post: Any, cli: Any, web_server: Server, clock: Any
) -> None:
    assert cli("lists", "set", LIST, "--archive", "public", "--policy", "open").exit_code == 0
    for i in range(31):
        clock.advance(minutes=1)
        assert (
            post(
                make_message(
                    "Alice Archer <alice@example.org>",
                    f"Topic number {i}",
                    f"Question {i}.",
                    message_id=f"t{i}@example.org",
                )
            ).code
            == 250
        )
    body = (
        "I have been thinking about this for a while, and here is what helped us. " * 8
        + "\n\nOn Fri, Bob wrote:\n"
        + "> an earlier message quoted in full\n" * 10
    )
    for i in range(19):
        clock.advance(minutes=1)
        assert (
            post(
                make_message(
                    f"Member {i} <m{i}@example.org>",
                    "Re: Topic number 0",
                    body,
                    message_id=f"r{i}@example.org",
                    in_reply_to="t0@example.org",
                )
            ).code
            == 250
        )
    reader = Client(web_server.web_port)
    first = reader.get("/living-with-als/")
    assert "Topic number 0" in first.text  # the most recently active first
    assert first.text.index("Topic number 0") < first.text.index("Topic number 30")
    assert "Topic number 1<" not in first.text and 'href="/living-with-als/?page=2"' in first.text
    second = reader.get("/living-with-als/?page=2")
    assert "Topic number 1<" in second.text and "?page=1" in second.text
    assert reader.get("/living-with-als/?page=3").status == 200

    css = len(reader.get("/style.css").body)
    thread = reader.get("/living-with-als/t/1")
    assert "20 members · 19 replies" in thread.text
    assert len(thread.body) + css < 50_000, (len(thread.body), css)
    assert len(first.body) + css < 50_000, (len(first.body), css)
