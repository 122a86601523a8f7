"""Replies that are not commands: which thread a reply to a digest answers, and whether a
non-command to `-request` looks like a post that would otherwise be lost.

A plain Reply to a digest goes to the digest's From, the `-request` address. The member's
words must still reach the thread they answer: the section they quoted, the thread reply
address they kept, or the subject of a section. When none of these tells, nothing is
guessed. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header

from listserv.core import replytext, threads

# Our digest Message-IDs: digest.<run id>.<delivery id>@<list domain> (schedule.digests).
_DIGEST_MID_RE = re.compile(r"^digest\.(\d{1,18})\.\d{1,18}@", re.IGNORECASE)
# A post that would be lost: more than this many words of new text (after quotes and
# signature), so "thanks" or a stray command word is not answered as a lost post.
POST_MIN_WORDS = 5
_QUOTE_RE = re.compile(r"^\s*>")


@dataclass(frozen=True)
class Section:
    """One thread of the digest replied to."""

    thread_id: int
    subject: str


@dataclass(frozen=True)
class Choice:
    """The thread a reply answers (None: we cannot tell), and how we know, in words."""

    thread_id: int | None
    reason: str


def digest_run(parent_candidates: Sequence[str]) -> int | None:
    """The digest run a reply answers, from its In-Reply-To or References, if ours."""
    for candidate in parent_candidates:
        match = _DIGEST_MID_RE.match(candidate)
        if match:
            return int(match[1])
    return None


def is_digest_subject(subject: str, list_title: str) -> bool:
    """Whether a subject is our digest's ("Re: Title — daily digest, 3 Nov 2026: ...")."""
    clean = threads.split_markers(subject)[1]
    return clean.casefold().startswith(f"{' '.join(list_title.split())} — daily digest".casefold())


def thread_addresses(text: str, list_address: str) -> list[int]:
    """Thread ids of the list's thread reply addresses (`list+t12@domain`) in `text`, in
    order of appearance."""
    local, _, domain = list_address.partition("@")
    pattern = re.compile(
        rf"\b{re.escape(local)}\+t(\d{{1,18}})@{re.escape(domain)}\b", re.IGNORECASE
    )
    return [int(m[1]) for m in pattern.finditer(text)]


def _interleaved(lines: list[str], list_address: str, known: set[int]) -> int | None:
    """A reply written inside the quoted digest answers the section it is written in:
    the first thread address quoted after the member's first own line that follows a
    quote."""
    seen_quote = False
    for index, line in enumerate(lines):
        if _QUOTE_RE.match(line):
            seen_quote = True
        elif line.strip() and seen_quote:
            for later in lines[index + 1 :]:
                if _QUOTE_RE.match(later):
                    found = [t for t in thread_addresses(later, list_address) if t in known]
                    if found:
                        return found[0]
            return None
    return None


def choose(
    subject: str, body: str, list_address: str, prefix: str, sections: Sequence[Section]
) -> Choice:
    """Which section of the digest a reply answers, in order of certainty."""
    known = {s.thread_id for s in sections}
    own = "\n".join(
        line for line in replytext.new_text(body).splitlines() if not _QUOTE_RE.match(line)
    )
    kept = set(thread_addresses(own, list_address)) & known
    if len(kept) == 1:
        return Choice(kept.pop(), "the thread reply address written in the reply")
    lines = body.replace("\r\n", "\n").split("\n")
    inside = _interleaved(lines, list_address, known)
    if inside is not None:
        return Choice(inside, "the reply is written inside that section of the digest")
    quoted = set(thread_addresses(body, list_address)) & known
    if len(quoted) == 1:
        return Choice(quoted.pop(), "only that section of the digest is quoted")
    key = threads.subject_key(subject, prefix)
    by_subject = [s.thread_id for s in sections if threads.subject_key(s.subject) == key]
    if len(by_subject) == 1:
        return Choice(by_subject[0], "the reply's subject is that section's")
    return Choice(None, "the reply does not say which conversation it answers")


_NUMBER_RE = re.compile(r"^\s*(?:#|no\.?\s*|number\s*)?(\d{1,3})\b\.?", re.IGNORECASE)


def chosen_number(body: str, choices: int) -> int | None:
    """The number of a conversation a member answered with ("2", "#2", "2." or "number 2"
    starting their reply), if it is one of the `choices` offered."""
    match = _NUMBER_RE.match(replytext.new_text(body))
    if match and 1 <= int(match[1]) <= choices:
        return int(match[1])
    return None


def looks_like_a_post(text: str) -> bool:
    """Whether a message that is not a command reads as words meant for the list: more
    than a few words of its own (quotes and signature trimmed)."""
    return len(replytext.new_text(text).split()) > POST_MIN_WORDS


def with_subject(raw: bytes, subject: str) -> bytes:
    """The message with its Subject replaced (a reply titled like the digest is posted
    under its thread's subject, as members see the thread), any script kept exactly."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    newline = b"\r\n"
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
        newline = b"\n"
    kept: list[bytes] = []
    skipping = False
    for line in head.split(newline):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(b"subject:")
        if not skipping:
            kept.append(line)
    value = (
        subject if subject.isascii() else Header(subject, "utf-8").encode(linesep=newline.decode())
    )
    kept.append(f"Subject: {value}".encode())
    return newline.join(kept) + sep + body
