"""What the owners' report counts, as values: failure kinds and per-day totals.

A failure is a deferral while we still retry; once we give up it is a bounce: hard (5xx),
soft (4xx until too old) or policy (x.7.x: the receiver's spam, DMARC or reputation
rules). Policy rejections say nothing about the mailbox, so they are counted apart and
must never count toward a member's bounce score. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from listserv.core.bounce_score import is_policy_rejection
from listserv.core.digest import latest_due

COLUMNS = ("posts", "deliveries", "deferrals", "hard_bounces", "soft_bounces",
           "policy_bounces", "complaints", "unsubscribes", "forgotten",
           "data_exports")


def failure_kind(code: int, text: str, final: bool) -> str:
    """deferral | hard | soft | policy, from an SMTP reply and whether we gave up."""
    if not final:
        return "deferral"
    if is_policy_rejection(text):
        return "policy"
    return "hard" if code >= 500 else "soft"


# An event's kind to the report column it counts in.
KIND_COLUMN = {
    "post": "posts", "delivery": "deliveries", "deferral": "deferrals",
    "hard": "hard_bounces", "soft": "soft_bounces", "policy": "policy_bounces",
    "complaint": "complaints", "unsubscribe": "unsubscribes",
    # A complaint that proved no member's copy: counted, though nobody was removed.
    "complaint-none": "complaints",
    # Requests for one's data (GDPR articles 15, 20) and to be forgotten (17): counted, the
    # address never shown.
    "forgotten": "forgotten", "data-export": "data_exports",
}


def tally(events: Iterable[tuple[date, str]], first: date,
          last: date) -> dict[date, dict[str, int]]:
    """The counts of each day from `first` to `last` (zeros included)."""
    days = {first + timedelta(n): dict.fromkeys(COLUMNS, 0)
            for n in range((last - first).days + 1)}
    for day, kind in events:
        row = days.get(day)
        column = KIND_COLUMN.get(kind)
        if row is not None and column is not None:
            row[column] += 1
    return days


def per_day(events: Iterable[tuple[date, str]], first: date, last: date) -> list[dict[str, object]]:
    """One row per day from `first` to `last` (zeros included), oldest first."""
    return [{"day": day.isoformat(), **counts}
            for day, counts in sorted(tally(events, first, last).items())]


def report_day(now: datetime, hour: int, tz: str) -> date:
    """The local day whose owners' report is due at `now`: the day before the latest digest
    hour that has passed, so the day is over and the report goes out with the digest."""
    return latest_due(now, hour, tz) - timedelta(days=1)


@dataclass(frozen=True)
class DayReport:
    """One day of a list as its owners read it in the daily report."""

    day: date
    counts: Mapping[str, int]  # COLUMNS
    complainers: tuple[str, ...]  # unsubscribed because their provider reported a complaint
    disabled: tuple[str, ...]  # delivery disabled for bouncing
    # "address: command" of messages to the list taken as commands in plain words
    commands: tuple[str, ...] = ()

    @property
    def quiet(self) -> bool:
        """Nothing happened: no report is sent for such a day."""
        return not (any(self.counts.values()) or self.complainers or self.disabled
                    or self.commands)
