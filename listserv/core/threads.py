"""Which thread a post joins.

In order: the thread of the parent named by In-Reply-To, then by any References id (newest
first), then the thread named by a reply tag (`list+t12@`, used from digests whose clients
send no In-Reply-To), then the most recent thread with the same subject within a window, but
only for a subject that says it is a reply ("Re: ..."). Otherwise the post starts a thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

SUBJECT_WINDOW = timedelta(days=30)

# Reply and forward markers of common mail programs, in several languages.
_MARKER = r"(?:re|fwd?|aw|sv|vs|wg|antw|odp|r|rif|tr|ynt)"
_MARKER_RE = re.compile(rf"^\s*{_MARKER}\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ThreadChoice:
    """`thread_id` None means a new thread; `parent` is the stored post replied to, if known."""

    thread_id: int | None
    parent_post_id: int | None
    reason: str


def strip_prefix(subject: str, prefix: str) -> str:
    """Remove every occurrence of the list's subject prefix, e.g. "[Living with ALS]"."""
    if not prefix:
        return subject.strip()
    return re.sub(re.escape(prefix.strip()), " ", subject, flags=re.IGNORECASE).strip()


def split_markers(subject: str, prefix: str = "") -> tuple[bool, str]:
    """(had a reply/forward marker, the subject without markers and list prefix)."""
    text = strip_prefix(subject, prefix)
    marked = False
    while True:
        stripped = _MARKER_RE.sub("", text, count=1)
        if stripped == text:
            break
        marked = True
        text = strip_prefix(stripped, prefix)
    return marked, " ".join(text.split())


def subject_key(subject: str, prefix: str = "") -> str:
    """The form of a subject that threads compare: no markers, no prefix, case-folded."""
    return split_markers(subject, prefix)[1].casefold()[:255]


def choose(
    parent_candidates: tuple[str, ...],
    known: Mapping[str, tuple[int, int]],
    subject: str,
    prefix: str,
    subject_match: tuple[int, datetime] | None,
    now: datetime,
    tagged_thread: int | None = None,
) -> ThreadChoice:
    """Decide the thread of a post.

    `known` maps stored Message-IDs of the list to (post id, thread id); `subject_match` is
    the most recent thread with this subject key and its last activity, if any.
    """
    for mid in parent_candidates:
        if mid in known:
            post_id, thread_id = known[mid]
            return ThreadChoice(thread_id, post_id, f"parent <{mid}>")
    if tagged_thread is not None:
        return ThreadChoice(tagged_thread, None, "reply address of the thread")
    is_reply, _ = split_markers(subject, prefix)
    if is_reply and subject_match is not None:
        thread_id, last_activity = subject_match
        if now - last_activity <= SUBJECT_WINDOW:
            return ThreadChoice(thread_id, None, "same subject")
    return ThreadChoice(None, None, "new thread")
