"""A post's text on a page, table by table: escaped, links made safe, addresses hidden,
quotes folded; dates as people write them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from listserv.app import environment, shipped_templates
from listserv.web import text


@pytest.mark.parametrize(
    ("raw", "html"),
    [
        ("plain words", "plain words"),
        ("<b>bold</b> & co", "&lt;b&gt;bold&lt;/b&gt; &amp; co"),
        (
            "see https://example.org/x.",
            'see <a href="https://example.org/x" '
            'rel="nofollow ugc noopener">https://example.org/x</a>.',
        ),
        (
            "(http://a.example/b?c=1&d=2)",
            '(<a href="http://a.example/b?c=1&amp;d=2" '
            'rel="nofollow ugc noopener">http://a.example/b?c=1&amp;d=2</a>)',
        ),
        (
            'https://x.example/"onmouseover="alert(1)',
            '<a href="https://x.example/" '
            'rel="nofollow ugc noopener">https://x.example/</a>&#34;onmouseover=&#34;alert(1)',
        ),
        (
            "javascript:alert(1) data:text/html,<script>",
            "javascript:alert(1) data:text/html,&lt;script&gt;",
        ),
        ("{{ 7*7 }}", "{{ 7*7 }}"),
    ],
)
def test_links_and_escaping(raw: str, html: str) -> None:
    assert str(text.linkify(raw)) == html


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("write to alice@example.org", "write to alice@…"),
        ("Ünïcode: jörg.müller@exämple.de", "Ünïcode: jörg.müller@…"),
        (
            "the list: living-with-als@lists.example.org",
            "the list: living-with-als@lists.example.org",
        ),
        ("no address @ all", "no address @ all"),
    ],
)
def test_addresses_are_hidden_but_the_lists_own(raw: str, shown: str) -> None:
    assert text.hide_addresses(raw, frozenset({"living-with-als@lists.example.org"})) == shown


def test_quoted_text_and_signatures_are_folded() -> None:
    body = text.body("Yes, it helps.\n\n-- \nBob\n\n> Does it help?\n", "Yes, it helps.")
    assert str(body.shown) == "Yes, it helps."
    assert str(body.folded) == "-- \nBob\n\n&gt; Does it help?"
    assert not body.whole
    alone = text.body("Just a question.\n", "Just a question.")
    assert alone.folded is None
    # Own words that do not begin the message (an answer below an attribution): the whole
    # message is behind the fold, as written.
    inline = text.body("On Friday Alice wrote:\n> Q\nAnswer.", "Answer.")
    assert str(inline.shown) == "Answer." and inline.whole


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("UTC", "18 Sep 2019, 10:15"),
        ("Europe/Paris", "18 Sep 2019, 12:15"),
        ("America/New_York", "18 Sep 2019, 06:15"),
    ],
)
def test_dates_are_written_as_people_read_them(zone: str, shown: str) -> None:
    assert text.when(datetime(2019, 9, 18, 10, 15, tzinfo=UTC), zone) == shown


def test_counts_and_names() -> None:
    assert text.plural(1, "reply", "replies") == "1 reply"
    assert text.plural(0, "reply", "replies") == "0 replies"
    assert text.author("", "alice@example.org") == "alice"
    assert text.author("Αλίκη Άρτσερ", "alice@example.org") == "Αλίκη Άρτσερ"
    assert text.size(2048) == "2 KB"


@pytest.mark.parametrize(
    ("name", "address", "shown"),
    [
        ("Alice Archer", "alice@example.org", "Alice Archer"),
        ("", "alice@example.org", "alice"),
        # Many mail programs make the display name the address itself.
        ("bob@example.com", "bob@example.com", "bob@…"),
        ("Bob (bob@example.com)", "bob@example.com", "Bob (bob@…)"),
    ],
)
def test_an_author_is_named_without_an_address(name: str, address: str, shown: str) -> None:
    assert text.author(name, address) == shown


def test_a_quoted_footer_shows_no_ones_personal_unsubscribe_link() -> None:
    """Bob's reply quotes his copy's footer: whoever read his one-click link or leave
    address on the page could unsubscribe him, so neither token is shown."""
    quoted = ("Thanks!\n\n> Leave with one click: https://lists.example.org/u/u-12-ab3f-9x_Q\n"
              "> or write to living-with-als-leave+u-12-ab3f-9x_Q@lists.example.org\n")
    page = str(text.body(quoted, "Thanks!").folded)
    assert "u-12-ab3f" not in page
    assert "https://lists.example.org/u/…" in page
    assert "living-with-als-leave+…@" in page


def test_subjects_and_file_names_are_masked_on_pages(tmp_path: Path) -> None:
    pages = environment(tmp_path)
    for name in ("web/thread.html", "web/threads.html", "web/search.html", "web/feed.xml"):
        assert "|masked" in (shipped_templates() / name).read_text()
    shown = pages.from_string("{{ subject|masked }}").render(
        subject="Re: mail from alice@example.org")
    assert shown == "Re: mail from alice@…"
