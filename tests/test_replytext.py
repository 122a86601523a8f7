"""Tests for listserv.replytext: one table per shape of reply, then the shared real-world corpus."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from inscriptis import get_annotated_text
from inscriptis.model.config import ParserConfig

from listserv.core import replytext
from listserv.core.replytext import new_text
from tests.corpus import corpus_dir, corpus_files

# (name, body, expected new text)
TRIMMED = [
    (
        "bottom quote after the reply",
        "Sounds good to me.\n\n> Shall we ship on Friday?\n> -- Bob\n",
        "Sounds good to me.",
    ),
    (
        "top-posting with On ... wrote:",
        "Yes, Friday works.\n\nOn Mon, 3 Jun 2024 at 10:02, Bob <bob@example.org> wrote:\n"
        "> Shall we ship on Friday?\n",
        "Yes, Friday works.",
    ),
    (
        "attribution wrapped over two lines",
        "Agreed.\n\nOn Mon, 3 Jun 2024 at 10:02, Bob Example <\nbob@example.org> wrote:\n\n> Hi\n",
        "Agreed.",
    ),
    (
        "attribution straight below the text, no blank line",
        'Agreed.\nOn Nov 28, 2014 12:36 PM, "Bob" <bob@example.org> wrote:\n\n> Hi\n',
        "Agreed.",
    ),
    (
        "French attribution over three lines",
        'C\'est bon.\nLe 4 janv. 2016 19:03, "Bob"\n<bob@example.org>\na écrit :\n\n> Salut\n',
        "C'est bon.",
    ),
    (
        "German attribution with the verb first",
        "Passt.\n\nAm 18.09.2013 um 16:24 schrieb Bob <bob@example.org>:\n\n> Hallo\n",
        "Passt.",
    ),
    (
        "Dutch attribution above an unquoted original",
        "Prima.\n\nOp 18 juli 2013 10:23 schreef Bob het volgende:\n\nDe originele post.\n",
        "Prima.",
    ),
    (
        "Gmail attribution without a verb (date and address)",
        "好的\n\n2016年12月12日 20:45 Bob <bob@example.org>:\n\n> 你好\n",
        "好的",
    ),
    (
        "Outlook -----Original Message----- block",
        "See attached.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nSubject: Q\n\nHi\n",
        "See attached.",
    ),
    (
        "Outlook From:/Sent:/To:/Subject: block below a rule",
        "Thanks!\n\n________________________________\nFrom: Bob <bob@example.org>\n"
        "Sent: Monday, June 3, 2024 10:02\nTo: list@example.org\nSubject: Q\n\nThe question.\n",
        "Thanks!",
    ),
    (
        "-- signature",
        "See you there.\n\n-- \nAlice Example\nhttps://alice.example.org\n",
        "See you there.",
    ),
    (
        "-- signature then the quote",
        "Fine.\n\n--\nAlice\n\nOn Mon, 3 Jun 2024, Bob <bob@example.org> wrote:\n> Ok?\n",
        "Fine.",
    ),
    ("Sent from my iPhone", "On my way.\n\nSent from my iPhone\n", "On my way."),
    ("German mobile signature", "Bin unterwegs.\n\nVon meinem iPhone gesendet\n", "Bin unterwegs."),
    (
        "Thunderbird bottom-posting: attribution and quote above the reply",
        "On 04/02/2012 06:26 PM, Bob wrote:\n> Hi\nHello\n",
        "Hello",
    ),
    (
        "quoted mailing-list footer below a rule",
        "I agree.\n\n_______________________________________________\ndevel mailing list\n"
        "devel@lists.example.org\nhttps://lists.example.org/listinfo/devel\n",
        "I agree.",
    ),
    ("CRLF line endings", "Line one\r\nLine two\r\n\r\n> quoted\r\n", "Line one\nLine two"),
]

# (name, body): bodies that must come back whole (stripped), because nothing is a quote or signature
KEPT = [
    (
        "inline answers between quotes",
        "Hi Bob,\n\nOn Mon, 3 Jun 2024, Bob <bob@example.org> wrote:\n> Does it build?\n"
        "Yes, on Linux.\n\n> And on Windows?\nNot yet.\n\nAlice",
    ),
    ("inline answers without attribution", "> Does it build?\nYes.\n\n> Windows?\nNot yet."),
    ("a quote kept as context above the answer", "> This is a quote.\n\nAnd this is my answer."),
    ("'>' inside lines", "If a > b then swap them.\nThe arrow => means maps to.\nx >= 3"),
    ("a sentence like a mobile signature", "Hi\n\nSent from my desk, far easier than a phone."),
    (
        "'wrote' and a colon in a sentence",
        "Hi all,\n\nI wrote a script that does this:\n\n    ls -l",
    ),
    ("a name 'wrote' line with own text below", "Bob wrote:\n\nI like it and so do I."),
    ("a weak attribution above unquoted text", "Hi all,\n\nHere's what Bob wrote:\n\nI disagree."),
    ("Dutch 'het volgende:' in a sentence", "Hoi,\n\nIk denk het volgende:\n\nWe wachten."),
    ("a Markdown rule between paragraphs", "Part one.\n\n---\n\nPart two, still mine."),
    ("'---' inside a sentence", "Part one --- and still part one.\nMore."),
    ("a lone From: line", "Hi\n\nFrom: the release team\nThe build is green."),
    ("a long text after -- is not a signature", "Intro\n--\n" + "\n".join(map(str, range(15)))),
]

# (name, body): trimming would leave nothing, so the body comes back stripped
ONLY_QUOTED = [
    ("only a quote", "> Shall we ship on Friday?\n> -- Bob\n"),
    (
        "only a forward",
        "---------- Forwarded message ---------\nFrom: Bob <bob@example.org>\n"
        "Date: Mon, 3 Jun 2024\nSubject: News\nTo: list@example.org\n\nThe news.\n",
    ),
    ("only a signature", "-- \nAlice\n"),
]


@pytest.mark.parametrize(("name", "body", "expected"), TRIMMED, ids=[t[0] for t in TRIMMED])
def test_trims(name: str, body: str, expected: str) -> None:
    assert new_text(body) == expected


@pytest.mark.parametrize(("name", "body"), KEPT, ids=[t[0] for t in KEPT])
def test_keeps_own_text(name: str, body: str) -> None:
    assert new_text(body) == body.strip()


@pytest.mark.parametrize(("name", "body"), ONLY_QUOTED, ids=[t[0] for t in ONLY_QUOTED])
def test_all_quote_returns_body(name: str, body: str) -> None:
    assert new_text(body) == body.strip()


def test_empty_body() -> None:
    assert new_text("") == ""
    assert new_text("  \n\n") == ""


def test_pure() -> None:
    assert not {"os", "time", "socket", "pathlib", "io"} & set(vars(replytext))


# --- The shared corpus -----------------------------------------------------------------------

_EMPHASIS = ParserConfig(annotation_rules={"b": ["**"], "strong": ["**"], "i": ["*"], "em": ["*"]})


def _html_to_text(html: str) -> str:
    """HTML to text with **bold** and *italic* kept: the corpus expects Markdown-ish text."""
    result = get_annotated_text(html, _EMPHASIS)
    text = result["text"]
    # At one position, ends go before starts; inner spans close first, outer spans open first.
    marks = [(end, 0, -start, tag) for start, end, tag in result["label"]]
    marks += [(start, 1, -end, tag) for start, end, tag in result["label"]]
    for pos, _, _, tag in sorted(marks, reverse=True):
        text = text[:pos] + tag + text[pos:]
    return text


def body_of(raw: bytes) -> str:
    """The readable body of a raw message: text/plain preferred, else HTML made text.

    A stand-in until the project's message parser takes over; it copes with what the corpus
    holds: blank lines before the headers, a multipart whose boundary never occurs, a lying
    charset label (UTF-8 bytes labelled Big5, or not labelled) and an unknown charset.
    """
    msg = email.message_from_bytes(raw.lstrip(b"\r\n"), policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None and not msg.is_multipart():
        part = msg  # a multipart/* whose boundary is missing: its payload is the text
    if part is None:
        return ""
    data = part.get_payload(decode=True) or b""
    try:
        text = data.decode("utf-8")  # valid UTF-8 is almost never another charset's text
    except UnicodeDecodeError:
        try:
            text = data.decode(part.get_content_charset() or "ascii", errors="replace")
        except LookupError:
            text = data.decode("latin-1")
    if part.get_content_type() == "text/html":
        text = _html_to_text(text)
    return text


def normalise(text: str) -> str:
    """LF line endings, no trailing spaces on a line, no blank lines at either end."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


# Cases where we differ from the expectation on purpose, each with its reason.
KNOWN_MISSES = {
    "talon_sparrow": "policy: we strip the '-- ' signature (talon keeps signatures); our text "
    "equals the index's alt_expected 'Hello'",
}

EXPECTED = corpus_files("replies", "*.expected.txt")


def _case(path: Path) -> str:
    return path.name.removesuffix(".expected.txt")


@pytest.mark.parametrize(
    "expected_path",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[_case(p)]))
        if _case(p) in KNOWN_MISSES
        else p
        for p in EXPECTED
    ],
    ids=[_case(p) for p in EXPECTED],
)
def test_corpus(expected_path: Path) -> None:
    folder = corpus_dir("replies")
    name = _case(expected_path)
    eml = folder / f"{name}.eml"
    if eml.exists():
        body = body_of(eml.read_bytes())
    else:
        body = (folder / f"{name}.body.txt").read_bytes().decode("utf-8")
    assert normalise(new_text(body)) == normalise(expected_path.read_text("utf-8"))


def test_corpus_known_misses_exist() -> None:
    folder = corpus_dir("replies")
    for name in KNOWN_MISSES:
        assert (folder / f"{name}.expected.txt").exists(), name
