"""`listserv report`: the per-day counts match what happened, with policy bounces apart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

import pytest

from listserv.core import stats
from listserv.server import Server

from .conftest import LIST, Clock, Sink, make_message
from .test_complaints import arf
from .test_membership import LEAVE, confirm_address, last, send
from .test_oneclick import ONE_CLICK, http, link_of

pytestmark = pytest.mark.both_databases

BOUNCES = "living-with-als-bounces@lists.example.org"


@pytest.fixture
def web_on(config_data: dict[str, Any]) -> None:
    config_data["web"] = {"host": "127.0.0.1", "port": 0,
                          "base_url": "https://lists.example.org"}


def test_report_counts_what_happened(web_on: None, als: str, cli: Any, post: Any,
                                     drain: Any, sink: Sink, clock: Clock,
                                     web_server: Server) -> None:
    for address in ("frank@example.org", "gina@example.org", "hank@example.org"):
        assert cli("members", "add", LIST, address).exit_code == 0
    sink.rcpt_replies.update({
        "dave@example.org": "451 4.3.0 Mailbox busy, try later",
        "frank@example.org": "550 5.1.1 No such user",
        "gina@example.org": "550 5.7.1 Rejected by local policy",
        "hank@example.org": "451 4.3.0 Try later",
    })
    # Nov 27: one post; bob gets it, dave and hank are deferred, frank and gina bounce.
    msg = make_message("alice@example.org", "Hello", "Hello all.", message_id="h@x.org")
    assert post(msg).code == 250
    drain()
    # Two minutes later dave takes it; hank defers again.
    del sink.rcpt_replies["dave@example.org"]
    clock.advance(minutes=2)
    drain()
    # Nov 28: bob leaves with one click; dave's provider reports a complaint.
    clock.now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert http(web_server, "POST", link_of(sink, "bob@example.net"), ONE_CLICK)[0] == 200
    (dave_copy,) = [r.content for r in sink.received if "dave@example.org" in r.rcpt_tos]
    assert post(arf(dave_copy, rcpt="dave@example.org"), to=[BOUNCES], sender="").code == 250
    # Dec 2: more than five days of 4xx for hank: we give up, a soft bounce.
    clock.now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    drain()

    result = cli("report", LIST, "--since", "2026-11-27", "--until", "2026-12-02", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["day"]: row for row in json.loads(result.output)}
    assert list(rows) == ["2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30",
                          "2026-12-01", "2026-12-02"]
    zero = dict.fromkeys(stats.COLUMNS, 0)
    assert rows["2026-11-27"] == {"day": "2026-11-27", **zero, "posts": 1, "deliveries": 2,
                                  "deferrals": 3, "hard_bounces": 1, "policy_bounces": 1}
    assert rows["2026-11-28"] == {"day": "2026-11-28", **zero, "complaints": 1,
                                  "unsubscribes": 1}
    assert rows["2026-11-29"] == {"day": "2026-11-29", **zero}
    assert rows["2026-12-02"] == {"day": "2026-12-02", **zero, "soft_bounces": 1}

    table = cli("report", LIST, "--since", "2026-11-27", "--until", "2026-11-28")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split() == ["DAY", *(c.upper() for c in stats.COLUMNS)]
    assert lines[1].split() == ["2026-11-27", "1", "2", "3", "1", "0", "1", "0", "0", "0", "0"]


def test_report_counts_every_way_of_leaving(als: str, cli: Any, post: Any, drain: Any,
                                            sink: Sink, clock: Clock) -> None:
    clock.now = datetime.now(UTC)  # the CLI acts at the real time: one day for everything
    # Bob leaves by mail and confirms; Dave with the leave address of a post; the admin
    # removes Erin.
    send(post, "bob@example.net", LEAVE, "unsubscribe", "")
    drain()
    send(post, "bob@example.net", confirm_address(last(sink, "bob@example.net")), "Re: c", "")
    send(post, "alice@example.org", LIST, "News", "hello", message_id="n@example.org")
    drain()
    (copy,) = sink.to("dave@example.org")
    leave = parseaddr(str(copy["List-Unsubscribe"]).strip("<>").removeprefix("mailto:"))[1]
    send(post, "dave@example.org", leave, "unsubscribe")
    assert cli("members", "remove", LIST, "ERIN@example.org").output == \
        f"removed erin@example.org from {LIST}\n"

    day = clock.now.date().isoformat()
    (row,) = json.loads(cli("report", LIST, "--since", day, "--until", day, "--json").output)
    assert row["unsubscribes"] == 3


def test_report_refuses_bad_ranges_and_unknown_lists(als: str, cli: Any) -> None:
    bad = cli("report", LIST, "--since", "2026-12-02", "--until", "2026-11-27")
    assert bad.exit_code == 1 and "--since is after --until" in bad.output
    unknown = cli("report", "no-such-list", "--json")
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output


@pytest.mark.parametrize("code, text, final, kind", [
    (451, "4.3.0 try later", False, "deferral"),
    (450, "4.7.1 greylisted", False, "deferral"),
    (451, "4.3.0 try later", True, "soft"),
    (550, "5.1.1 no such user", True, "hard"),
    (550, "5.7.1 rejected by DMARC policy", True, "policy"),
    (421, "4.7.0 too many messages, reputation", True, "policy"),
    (554, "no enhanced code", True, "hard"),
])
def test_failure_kinds(code: int, text: str, final: bool, kind: str) -> None:
    assert stats.failure_kind(code, text, final) == kind
