"""Searching a list's archive: best matches first with the words highlighted, phrases in
quotes, accents folded in any script, the author's own words only (not what they quote),
indexed in the transaction that stores the post, rebuilt by `archive reindex`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from listserv.store import search
from listserv.store.database import Database
from listserv.store.search import fold, terms

from .conftest import LIST, make_message
from .web import Client


@pytest.fixture
def reader(als: str, cli: Any, web_server: Any) -> Client:
    assert cli("lists", "set", LIST, "--archive", "public").exit_code == 0
    return Client(web_server.web_port)


def say(
    post: Any,
    subject: str,
    body: str,
    mid: str,
    sender: str = "Alice Archer <alice@example.org>",
    parent: str | None = None,
) -> None:
    assert post(make_message(sender, subject, body, message_id=mid, in_reply_to=parent)).code == 250


def found(reader: Client, query: str) -> list[str]:
    """The thread links of a search, in order ("t/1#p2")."""
    page = reader.get("/living-with-als/search?" + urlencode({"q": query}))
    assert page.status == 200, page.text
    return re.findall(r'href="/living-with-als/(t/\d+#p\d+)"', page.text)


def test_search_finds_words_and_phrases_best_first_with_highlights(
    reader: Client, post: Any
) -> None:
    say(
        post,
        "Does massage therapy help?",
        "Does massage therapy help to maintain overall function and muscle strength?",
        "q@example.org",
    )
    say(
        post,
        "Stretching",
        "A physiotherapist showed me stretches; some massage too.",
        "s@example.org",
    )
    say(post, "Shopping", "Strength of muscle is what the physio measured.", "m@example.org")
    assert found(reader, "massage") == ["t/1#p1", "t/2#p2"]  # in the subject too: first
    assert found(reader, "MASSAGE therapy") == ["t/1#p1"]
    assert sorted(found(reader, "muscle strength")) == ["t/1#p1", "t/3#p3"]
    assert found(reader, '"muscle strength"') == ["t/1#p1"]
    assert found(reader, "acupuncture") == []
    page = reader.get("/living-with-als/search?q=massage").text
    assert "<mark>massage</mark> therapy help to maintain" in page
    assert "Nothing found" in reader.get("/living-with-als/search?q=acupuncture").text


def test_accents_are_folded_and_every_script_is_found(reader: Client, post: Any) -> None:
    say(
        post, "Thérapie", "La thérapie par massage aide-t-elle à garder la force?", "fr@example.org"
    )
    say(post, "Массаж", "Помогает ли массаж сохранить силу мышц?", "ru@example.org")
    say(post, "按摩", "按摩 有 帮助 吗", "zh@example.org")
    assert found(reader, "therapie") == ["t/1#p1"]
    assert found(reader, "THÉRAPIE") == ["t/1#p1"]
    assert found(reader, "массаж") == ["t/2#p2"]
    assert found(reader, "МАССАЖ") == ["t/2#p2"]
    assert found(reader, "按摩") == ["t/3#p3"]
    page = reader.get("/living-with-als/search?q=therapie").text
    assert "La <mark>thérapie</mark> par massage" in page


def test_only_the_authors_own_words_are_searched(reader: Client, post: Any) -> None:
    say(post, "Ramps", "Our ramp is aluminium.", "r@example.org")
    say(
        post,
        "Re: Ramps",
        "Ours is wood.\n\nOn Friday Alice wrote:\n> Our ramp is aluminium.\n",
        "r2@example.net",
        sender="Bob Baker <bob@example.net>",
        parent="r@example.org",
    )
    assert found(reader, "aluminium") == ["t/1#p1"]
    assert found(reader, "wood") == ["t/1#p2"]


def test_a_held_post_is_found_only_once_approved(reader: Client, post: Any, cli: Any) -> None:
    say(
        post,
        "Wheelchairs",
        "Which wheelchair cushion do you use?",
        "w@example.org",
        sender="Stranger <stranger@example.com>",
    )
    assert found(reader, "cushion") == []
    assert cli("held", "approve", "1").exit_code == 0
    assert found(reader, "cushion") == ["t/1#p1"]


def test_hostile_queries_and_texts_are_harmless(reader: Client, post: Any) -> None:
    say(post, "Tags", "<b>massage</b> & <script>alert(1)</script>", "h@example.org")
    for query in (
        '"',
        '"""',
        "*",
        "NEAR(a b)",
        "a OR b",
        "-x",
        "'",
        "%",
        "\0",
        "a:b",
        "^",
        "(",
        ")",
        "massage*",
        "subject:massage",
        "x" * 500,
        "a " * 300,
    ):
        found(reader, query)
    page = reader.get("/living-with-als/search?q=massage").text
    assert "&lt;b&gt;<mark>massage</mark>&lt;/b&gt; &amp; &lt;script&gt;" in page


def test_archive_reindex_rebuilds_the_index(
    reader: Client, post: Any, cli: Any, db: Database
) -> None:
    say(post, "Does massage therapy help?", "It may.", "q@example.org")
    with db.transaction() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("INSERT INTO post_search(post_search) VALUES ('delete-all')"))
        else:
            conn.execute(text("DELETE FROM post_search"))
    assert found(reader, "massage") == []
    result = cli("archive", "reindex", "living-with-als")
    assert result.exit_code == 0, result.output
    assert result.output == f"{LIST}: search index rebuilt, 1 posts indexed\n"
    assert found(reader, "massage") == ["t/1#p1"]
    bad = cli("archive", "reindex", "no-such-list")
    assert bad.exit_code == 1 and "no such list" in bad.output


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("massage", [["massage"]]),
        ('"muscle strength" Thérapie', [["muscle", "strength"], ["therapie"]]),
        ('" OR * NEAR(', [["or"], ["near"]]),
        ("", []),
    ],
)
def test_queries_become_words_and_phrases(query: str, expected: list[list[str]]) -> None:
    assert terms(query) == expected


def test_folding_keeps_positions() -> None:
    assert fold("Thérapie ÉTÉ Ærö Ωμέγα") == "therapie ete æro ωμεγα"
    assert len(fold("Thérapie ÉTÉ")) == len("Thérapie ÉTÉ")


def test_a_common_word_is_ranked_among_its_newest_matches(
    reader: Client, post: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RANKED", 2)
    say(post, "Massage massage massage", "massage, massage and massage", "m1@example.org")
    say(post, "Pool", "swimming and a massage", "m2@example.org")
    say(post, "Garden", "a massage after gardening", "m3@example.org")
    assert sorted(found(reader, "massage")) == ["t/2#p2", "t/3#p3"]
    assert found(reader, "gardens") == []  # no stemming: "gardening" is another word
    assert found(reader, "massage massage") == found(reader, "massage")
