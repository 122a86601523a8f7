"""What the owners' report counts, as values: failure kinds and per-day totals.

A failure is a deferral while we still retry; once we give up it is a bounce: hard (5xx),
soft (4xx until too old) or policy (x.7.x: the receiver's spam, DMARC or reputation
rules). Policy rejections say nothing about the mailbox, so they are counted apart and
must never count toward a member's bounce score. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

COLUMNS = ("posts", "deliveries", "deferrals", "hard_bounces", "soft_bounces",
           "policy_bounces", "complaints", "unsubscribes")

_ENHANCED_RE = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def failure_kind(code: int, text: str, final: bool) -> str:
    """deferral | hard | soft | policy, from an SMTP reply and whether we gave up."""
    if not final:
        return "deferral"
    enhanced = _ENHANCED_RE.match(text)
    if enhanced and enhanced[2] == "7":
        return "policy"
    return "hard" if code >= 500 else "soft"


# An event's kind to the report column it counts in.
KIND_COLUMN = {
    "post": "posts", "delivery": "deliveries", "deferral": "deferrals",
    "hard": "hard_bounces", "soft": "soft_bounces", "policy": "policy_bounces",
    "complaint": "complaints", "unsubscribe": "unsubscribes",
}


def per_day(events: Iterable[tuple[date, str]], first: date, last: date) -> list[dict[str, object]]:
    """One row per day from `first` to `last` (zeros included), oldest first."""
    days = {first + timedelta(n): dict.fromkeys(COLUMNS, 0)
            for n in range((last - first).days + 1)}
    for day, kind in events:
        row = days.get(day)
        column = KIND_COLUMN.get(kind)
        if row is not None and column is not None:
            row[column] += 1
    return [{"day": day.isoformat(), **counts} for day, counts in sorted(days.items())]
