"""The owners' daily report: yesterday's figures, emailed to each owner once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import dkim
import pytest

from listserv.app import environment
from listserv.config import Config
from listserv.core.stats import DayReport
from listserv.schedule import dailyreport
from listserv.store.database import Database

from .conftest import LIST, Clock, Sink, make_message
from .test_complaints import arf

pytestmark = pytest.mark.both_databases

OWNER = "olga@example.org"
BOUNCES = "living-with-als-bounces@lists.example.org"
CAREGIVERS = "caregivers@lists.example.org"


@pytest.fixture
def strict_bounces(config_data: dict[str, Any]) -> None:
    """One hard bounce disables a member's delivery."""
    config_data["bounces"] = {"threshold": 1.0}


def reports_to(sink: Sink, address: str) -> list[Any]:
    return [m for m in sink.to(address) if "daily report" in str(m["Subject"])]


def body(msg: Any) -> str:
    return msg.get_content().replace("\r\n", "\n")


def a_day_on_the_list(cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock) -> None:
    """Nov 27: one post; Frank's mailbox is gone (with `strict_bounces` his delivery stops,
    the owner is told, and the notice telling Frank bounces too); Dave's provider reports
    the post as spam."""
    assert cli("lists", "set", LIST, "--owner", OWNER).exit_code == 0
    assert cli("members", "add", LIST, "frank@example.org").exit_code == 0
    sink.rcpt_replies["frank@example.org"] = "550 5.1.1 No such user"
    assert post(make_message("alice@example.org", "Hello", "Hello all.",
                             message_id="h@x.org")).code == 250
    drain()
    clock.now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    (dave_copy,) = [r.content for r in sink.received if "dave@example.org" in r.rcpt_tos]
    assert post(arf(dave_copy, rcpt="dave@example.org"), to=[BOUNCES], sender="").code == 250


def test_a_complaint_reaches_the_owner_in_the_next_days_report_once(
        strict_bounces: None, signed: Any, als: str, cli: Any, post: Any, drain: Any, sink: Sink,
        clock: Clock, scheduler: Any) -> None:
    a_day_on_the_list(cli, post, drain, sink, clock)
    # Before the digest hour of Nov 28 the day is not reported yet.
    clock.now = datetime(2026, 11, 28, 6, 59, tzinfo=UTC)
    scheduler()
    drain()
    assert reports_to(sink, OWNER) == []
    clock.now = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    scheduler()
    scheduler()  # a restart, or the next check
    clock.advance(hours=1)
    scheduler()
    drain()
    (report,) = reports_to(sink, OWNER)
    assert report["Subject"] == "Living with ALS: daily report, 27 Nov 2026"
    assert report["Auto-Submitted"] == "auto-generated"
    assert report["From"] == "Living with ALS <living-with-als-request@lists.example.org>"
    (raw,) = [r.content for r in sink.received if r.message["Subject"] == report["Subject"]]
    assert dkim.verify(raw, dnsfunc=signed)
    text = body(report)
    assert "What happened on living-with-als@lists.example.org on 27 Nov 2026 (UTC):" in text
    figures = dict(line.rsplit(None, 1) for line in text.splitlines()
                   if line.startswith("  ") and line.split()[-1].isdigit())
    assert figures == {
        "  posts": "1", "  deliveries": "3", "  deferrals": "0", "  bounces, hard": "2",
        "  bounces, soft": "0", "  bounces, policy": "0", "  complaints": "1",
        "  unsubscribes": "0", "  disabled for bouncing": "1",
    }
    assert ("Unsubscribed because their mail provider reported our mail as spam:\n"
            "  dave@example.org\n") in text
    assert "Delivery disabled because their mail bounced:\n  frank@example.org\n" in text
    # The next day nothing happened (the report itself does not count): no report.
    clock.now = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
    scheduler()
    drain()
    assert len(reports_to(sink, OWNER)) == 1
    # The figures are the ones `listserv report` prints for that day.
    assert cli("report", LIST, "--since", "2026-11-27", "--until", "2026-11-27"
               ).output.splitlines()[1].split() == ["2026-11-27", "1", "3", "0", "2", "0",
                                                    "0", "1", "0", "0", "0"]


def test_lists_without_owners_and_quiet_days_send_nothing(
        als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock,
        scheduler: Any) -> None:
    assert cli("lists", "create", "caregivers", "--title", "Caregivers").exit_code == 0
    assert cli("members", "add", CAREGIVERS, "gina@example.org").exit_code == 0
    assert cli("lists", "set", LIST, "--owner", OWNER).exit_code == 0
    assert post(make_message("alice@example.org", "Hi", "Hello.", to=CAREGIVERS,
                             message_id="c@x.org"), to=[CAREGIVERS]).code == 250
    drain()
    clock.now = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    scheduler()
    drain()
    # Caregivers had a post but no owner; living-with-als had an owner but a quiet day.
    assert [m for r in sink.received for m in [r.message]
            if "daily report" in str(m["Subject"])] == []


def test_two_schedulers_at_once_send_one_report(
        als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock,
        config: Config) -> None:
    a_day_on_the_list(cli, post, drain, sink, clock)
    templates = environment(config.base_dir)
    at = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    databases = [Database(config.database_url, 5.0) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            made = list(pool.map(lambda d: dailyreport.schedule(d, config, templates, at),
                                 databases))
    finally:
        for d in databases:
            d.dispose()
    assert sorted(len(m) for m in made) == [0, 1]
    clock.now = at
    drain()
    assert len(reports_to(sink, OWNER)) == 1


def test_a_day_is_quiet_only_without_any_figure_or_address() -> None:
    zero = dict.fromkeys(["posts", "deliveries"], 0)
    assert DayReport(date(2026, 11, 27), zero, (), ()).quiet
    assert not DayReport(date(2026, 11, 27), zero, (), (), ("bob@example.net: digest on",)).quiet
    assert not DayReport(date(2026, 11, 27), {**zero, "posts": 1}, (), ()).quiet
    assert not DayReport(date(2026, 11, 27), zero, (), ("frank@example.org",)).quiet


def test_a_complaint_tied_to_no_copy_is_counted_for_the_owner_and_removes_nobody(
        als: str, cli: Any, post: Any, drain: Any, sink: Sink, clock: Clock,
        scheduler: Any) -> None:
    assert cli("lists", "set", LIST, "--owner", OWNER).exit_code == 0
    clock.now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    made_up = make_message(LIST, "spam", "x", headers={
        "List-Id": "Living with ALS <living-with-als.lists.example.org>"}).as_bytes()
    report = arf(made_up, rcpt="dave@example.org", more_rcpts=("bob@example.net",),
                 headers_only=True)
    assert post(report, to=[BOUNCES], sender="").code == 250
    clock.now = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    scheduler()
    drain()
    (sent,) = reports_to(sink, OWNER)
    text = body(sent)
    assert "  complaints               1\n" in text
    assert "Unsubscribed because" not in text
    assert ("1 spam complaint(s) carried no member's own copy of our mail (made up, or the\n"
            "provider removed our links): nobody was unsubscribed for them.\n") in text
    members = cli("members", "list", LIST).output
    assert "dave@example.org" in members and "bob@example.net" in members
