"""The archive's full-text index: SQLite FTS5 or PostgreSQL full-text search, one interface.

A post is indexed in the transaction that stores it (`store.posts` runs `INSERTS` through
`store.fastpath` with `row()`), by its clean subject and the author's own words (quoted
text would make every reply match its parent's words). Accents are folded on both
databases: FTS5 with `unicode61 remove_diacritics 2`, PostgreSQL by indexing text folded
here with the `simple` configuration (no stemming: the lists speak many languages).
Snippets and highlights are made here from the stored text, so they look the same on both.
"""

from __future__ import annotations

import re
import unicodedata

from markupsafe import Markup, escape
from sqlalchemy import (
    Column,
    Connection,
    Executable,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    insert,
    select,
    text,
)

from listserv.core import threads
from listserv.store.models import MailingList, Post

TABLE = "post_search"

_DDL = {
    "sqlite": [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(subject, new_text,"
        " content='', tokenize='unicode61 remove_diacritics 2')",
    ],
    "postgresql": [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (post_id INTEGER PRIMARY KEY REFERENCES posts(id)"
        " ON DELETE CASCADE, list_id INTEGER NOT NULL, doc TSVECTOR NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_doc ON {TABLE} USING GIN (doc)",
    ],
}

_fts = Table(
    TABLE, MetaData(), Column("rowid", Integer), Column("subject", Text), Column("new_text", Text)
)

# The index row of one post, per dialect: run by store.posts's fast path with row()'s values.
INSERTS: dict[str, Executable] = {
    "sqlite": insert(_fts).values(
        rowid=bindparam("post_id"), subject=bindparam("subject"), new_text=bindparam("text")
    ),
    "postgresql": text(
        f"INSERT INTO {TABLE} (post_id, list_id, doc) VALUES (:post_id, :list_id,"
        " setweight(to_tsvector('simple', :subject), 'A') || to_tsvector('simple', :text))"
    ),
}


def fold(text: str) -> str:
    """Lower case without accents, character by character (so positions still match)."""
    return "".join(_fold_char(c) for c in text)


def _fold_char(char: str) -> str:
    if char.isascii():
        return char.lower()
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return (base[:1] or char).lower()


def row(dialect: str, post_id: int, list_id: int, subject: str, new_text: str) -> dict[str, object]:
    """The values of one post's index row (PostgreSQL indexes the folded text)."""
    if dialect == "postgresql":  # words only: its parser would drop "<script>" as a tag
        subject, new_text = _words(subject), _words(new_text)
    return {"post_id": post_id, "list_id": list_id, "subject": subject, "text": new_text}


def _words(text_: str) -> str:
    return " ".join(_WORD_RE.findall(fold(text_)))


def create(conn: Connection) -> None:
    """Create the index if it is missing (after the posts table)."""
    for statement in _DDL.get(conn.dialect.name, []):
        conn.execute(text(statement))


def reindex(conn: Connection, list_id: int | None = None) -> int:
    """Rebuild the index of one list (None: of all) from the stored posts; how many posts
    were indexed.

    FTS5 cannot drop one list's rows of a contentless index that may be damaged (its delete
    needs the values once indexed), so on SQLite the index is made again for every list."""
    if conn.dialect.name == "sqlite" or list_id is None:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        create(conn)
        lists = list(conn.scalars(select(MailingList.id)))
    else:
        conn.execute(text(f"DELETE FROM {TABLE} WHERE list_id = :l"), {"l": list_id})
        lists = [list_id]
    indexed = 0
    for each in lists:
        prefix = conn.scalar(select(MailingList.subject_prefix).where(MailingList.id == each))
        last = 0
        while rows := conn.execute(
            select(Post.id, Post.subject, Post.new_text)
            .where(Post.list_id == each, Post.id > last)
            .order_by(Post.id)
            .limit(2000)
        ).all():
            conn.execute(
                INSERTS[conn.dialect.name],
                [
                    row(conn.dialect.name, pid, each, subject_words(subject, prefix or ""), body)
                    for pid, subject, body in rows
                ],
            )
            last = rows[-1][0]
            indexed += len(rows)
    if conn.dialect.name == "sqlite":
        # One segment instead of hundreds: fewer to read per query, and a smaller structure
        # record for each later post's transaction to rewrite (1,000,000 posts: 0.9 s).
        conn.execute(text(f"INSERT INTO {TABLE}({TABLE}) VALUES ('optimize')"))
    return indexed


def subject_words(subject: str, prefix: str) -> str:
    """What of a subject is indexed: without Re:, Fwd: and the list's prefix."""
    return threads.split_markers(subject, prefix)[1] or subject


# -- queries ---------------------------------------------------------------------------------
_TERM_RE = re.compile(r'"([^"]*)"|(\S+)')
_WORD_RE = re.compile(r"\w+")
MAX_TERMS = 16


def terms(query: str) -> list[list[str]]:
    """The query as words and "quoted phrases", each a list of folded words (at most 16)."""
    out = []
    for phrase, word in _TERM_RE.findall(query):
        words = _WORD_RE.findall(fold(phrase or word))
        if words:
            out.append(words)
    return out[:MAX_TERMS]


# Ranking looks at the newest 2,000 matches of the list: a word in 2% of a million posts
# would otherwise have 20,000 rows ranked for each page (0.9 s on SQLite, measured with
# bench/web.py); the best of the newest 2,000 are the answers readers want.
RANKED = 2000

_SQLITE = f"""
SELECT p.id FROM {TABLE} JOIN posts p ON p.id = {TABLE}.rowid
WHERE {TABLE} MATCH :match AND p.list_id = :list AND {TABLE}.rowid >= coalesce((
    SELECT f.rowid FROM {TABLE} AS f JOIN posts AS q ON q.id = f.rowid
    WHERE f.{TABLE} MATCH :match AND q.list_id = :list
    ORDER BY f.rowid DESC LIMIT 1 OFFSET :ranked), 0)
ORDER BY bm25({TABLE}, 2.0, 1.0) LIMIT :limit OFFSET :offset
"""

# PostgreSQL: the cutoff first, then the ranking, as two statements. In one, a rare word
# (no cutoff: fewer matches than RANKED) had the planner AND the GIN bitmap with every row
# of the primary key (50 ms for a word of one post in 1,000,000; 4 ms as two statements).
_PG_CUTOFF = f"""
SELECT f.post_id FROM {TABLE} f, (SELECT {{query}}) AS q(q)
WHERE f.doc @@ q.q AND f.list_id = :list ORDER BY f.post_id DESC OFFSET :ranked LIMIT 1
"""
_PG_RANKED = f"""
SELECT s.post_id FROM {TABLE} s, (SELECT {{query}}) AS q(q)
WHERE s.doc @@ q.q AND s.list_id = :list {{after}}
ORDER BY ts_rank(s.doc, q.q) DESC, s.post_id DESC LIMIT :limit OFFSET :offset
"""


def search(
    conn: Connection, list_id: int, query: str, limit: int = 20, offset: int = 0
) -> list[int]:
    """Ids of the posts of a list matching every word and phrase, best first."""
    found = terms(query)
    if not found:
        return []
    params: dict[str, object] = {
        "list": list_id,
        "limit": limit,
        "offset": offset,
        "ranked": RANKED - 1,
    }
    if conn.dialect.name == "sqlite":
        params["match"] = " ".join('"' + " ".join(words) + '"' for words in found)
        rows = conn.execute(text(_SQLITE), params)
    else:
        parts = []
        for i, words in enumerate(found):
            params[f"t{i}"] = " ".join(words)
            parts.append(f"phraseto_tsquery('simple', :t{i})")
        tsquery = " && ".join(parts)
        params["cutoff"] = conn.scalar(text(_PG_CUTOFF.format(query=tsquery)), params)
        after = "AND s.post_id >= :cutoff" if params["cutoff"] is not None else ""
        rows = conn.execute(text(_PG_RANKED.format(query=tsquery, after=after)), params)
    return [r[0] for r in rows]


def snippet(text_: str, query: str, words: int = 36) -> Markup:
    """A passage of `text_` around the first match, escaped, with matched words in <mark>."""
    wanted = {w for ws in terms(query) for w in ws}
    tokens = list(_WORD_RE.finditer(text_))
    hits = [i for i, m in enumerate(tokens) if fold(m[0]) in wanted]
    if not tokens:
        return Markup("")
    first = max(0, (hits[0] if hits else 0) - words // 3)
    last = min(len(tokens), first + words)
    start = tokens[first].start() if first else 0
    end = tokens[last - 1].end() if last < len(tokens) else len(text_)
    pieces: list[str] = ["… " if first else ""]
    at = start
    for m in tokens[first:last]:
        if fold(m[0]) in wanted:
            pieces += [str(escape(text_[at : m.start()])), "<mark>", str(escape(m[0])), "</mark>"]
            at = m.end()
    pieces.append(str(escape(text_[at:end])))
    if last < len(tokens):
        pieces.append(" …")
    return Markup("".join(pieces))
