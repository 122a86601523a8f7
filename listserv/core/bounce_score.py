"""Members' bounce scores, kept the way Mailman keeps them.

Pure: no I/O and no clock; callers pass today's date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

# RFC 3463 class 4 or 5, subject 7 ("Security or Policy Status"): spam, DMARC, reputation,
# blocklist. Such a failure says nothing about whether the mailbox works.
_POLICY_STATUS_RE = re.compile(r"\s*[45]\.7\.\d{1,3}\b")


def is_policy_rejection(status: str | None) -> bool:
    """Whether an enhanced status code (or a reply text that starts with one) says the
    receiver's policy refused the mail rather than that the mailbox is dead: such a
    bounce is recorded and counted apart, never toward a member's bounce score."""
    return status is not None and _POLICY_STATUS_RE.match(status) is not None


@dataclass(frozen=True)
class BounceScore:
    score: float
    last_bounce: date | None


PERMANENT_POINTS = 1.0
TEMPORARY_POINTS = 0.5


def add_bounce(
    current: BounceScore, *, permanent: bool, today: date, decay_days: int = 7
) -> BounceScore:
    """Score one more bounce the way Mailman does.

    Only the first bounce of a day counts, whatever its kind: a message fanned out to
    several lists, or retried by a remote MTA, must not disable a member in one day.
    (So a temporary bounce in the morning hides a permanent one that afternoon; the
    next day's bounce counts again.)  After more than ``decay_days`` without bounces
    the old score is forgotten.  A bounce dated before the last counted one (a clock
    step back) changes nothing.

    Policy rejections (`is_policy_rejection`, status 5.7.x/4.7.x) must not be
    passed here at all: they reflect the receiver's view of the list's mail, not a
    broken address, and counting them would unsubscribe healthy members.
    """
    if decay_days < 0:
        raise ValueError(f"decay_days must not be negative, got {decay_days}")
    last = current.last_bounce
    if last is not None and today <= last:
        return current
    score = current.score
    if last is None or (today - last).days > decay_days:
        score = 0.0
    points = PERMANENT_POINTS if permanent else TEMPORARY_POINTS
    return BounceScore(score=score + points, last_bounce=today)


def should_disable(score: BounceScore, threshold: float = 5.0) -> bool:
    """Whether delivery to the member should stop: the score has reached the threshold."""
    return score.score >= threshold
