"""Daily digests as a reader gets them: content, exactly once, DST, replies, safety."""

from __future__ import annotations

import email
import email.utils
import itertools
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import dkim
import pytest
from sqlalchemy import select, update

from listserv.config import LimitsConfig
from listserv.core import digest
from listserv.core.message import Malformed, parse
from listserv.core.replytext import new_text
from listserv.store.database import Database
from listserv.store.models import Delivery, DigestRun, MailingList, Post, Thread

from .conftest import LIST, Clock, Sink, count, make_message
from .corpus import corpus_dir, corpus_files
from .test_replytext import normalise
from .test_serve import wait_for

pytestmark = pytest.mark.both_databases

QUESTION = "Does massage therapy help to maintain overall function and muscle strength?"
CAROL = "carol@example.com"
# Posts of Monday 2 Nov 2026 (UTC list, digest hour 7) go out in the digest of 3 Nov.
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DIGEST_DUE = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)

SEED_TEXT = """\
Living with ALS — daily digest, 3 Nov 2026
1 new thread, 1 reply

Contents

  1. Massage therapy? (new)
     2 posts: Alice Archer, Bob Baker

==============================================================================
1. Massage therapy?
==============================================================================

From: Alice Archer, Mon 02 Nov 2026, 09:00 UTC

Does massage therapy help to maintain overall function and muscle strength?

------------------------------------------------------------------------------
From: Bob Baker, Mon 02 Nov 2026, 09:05 UTC

Yes, twice a week helps me.

Reply to this thread: living-with-als+t1@lists.example.org
Follow it post by post: living-with-als-request+follow-t1@lists.example.org

==============================================================================
--\x20
You receive Living with ALS <living-with-als@lists.example.org> as a daily
digest at carol@example.com.
To get each message as it is posted, send "digest off" to
living-with-als-request@lists.example.org.
To leave the list, write to living-with-als-leave@lists.example.org.
"""


def seed_thread(post: Any, clock: Clock, start: datetime = MONDAY) -> None:
    """The seed scenario: Alice asks, Bob answers quoting her, five minutes later."""
    clock.now = start
    question = make_message("Alice Archer <alice@example.org>", "Massage therapy?", QUESTION,
                            message_id="q1@example.org")
    assert post(question).code == 250
    clock.advance(minutes=5)
    reply = make_message("Bob Baker <bob@example.net>",
                         "Re: [Living with ALS] Massage therapy?",
                         "Yes, twice a week helps me.\n\nOn Mon, Alice Archer wrote:\n> "
                         + QUESTION + "\n\n-- \nBob\n",
                         message_id="r1@example.net", in_reply_to="q1@example.org",
                         references="<q1@example.org>")
    assert post(reply).code == 250


def digests_to(sink: Sink, address: str) -> list[EmailMessage]:
    return [m for m in sink.to(address)  # type: ignore[misc]
            if str(m["Subject"]).startswith("Living with ALS — daily digest")]


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    # On the wire lines end in CRLF, which the parser keeps in decoded content.
    return (text.get_content().replace("\r\n", "\n"),
            html.get_content().replace("\r\n", "\n"))


def test_seed_digest_reaches_the_digest_reader_once(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> None:
    seed_thread(post, clock)
    drain()
    assert digests_to(sink, CAROL) == []  # nothing before the digest hour
    clock.now = DIGEST_DUE
    scheduler()
    drain()
    (msg,) = digests_to(sink, CAROL)
    assert msg["Subject"] == ("Living with ALS — daily digest, 3 Nov 2026: "
                              "1 new thread, 1 reply")
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    assert text == SEED_TEXT
    assert "<h1" in html and "Massage therapy?" in html
    assert "mailto:living-with-als+t1@lists.example.org" in html
    assert "carol@example.com" in html
    # Inline CSS only and nothing fetched from elsewhere: clients strip <style> and block images.
    for outside in ("<style", "<link", "src=", "http://", "https://", "url("):
        assert outside not in html
    # The list headers of every list message, and no auto-replies to it.
    assert msg["List-Id"] == "Living with ALS <living-with-als.lists.example.org>"
    # Carol's own leave address, as in a post copy: one message removes her.
    assert str(msg["List-Unsubscribe"]).startswith("<mailto:living-with-als-leave+u-")
    assert msg["List-Unsubscribe-Post"] is None  # one-click needs the web endpoint
    # Replies go to each thread's address, never to the list as "Re: ... daily digest".
    assert msg["List-Post"] is None
    assert email.utils.parseaddr(str(msg["From"])) == (
        "Living with ALS", "living-with-als-request@lists.example.org")
    assert msg["Reply-To"] is None
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"  # like every message we send ourselves
    assert msg["To"] == CAROL
    # A bounce of the digest names its reader (VERP).
    assert {r.mail_from.rpartition("=")[0] for r in sink.received if CAROL in r.rcpt_tos} == {
        "living-with-als-bounces+carol=example.com"}
    # Only the digest reader gets it; the plain text stays within 80 columns.
    assert sorted(r for m in sink.received for r in m.rcpt_tos
                  if "daily digest" in m.message["Subject"]) == [CAROL]
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.fixture
def web_forum(config_data: dict[str, Any]) -> None:
    config_data["web"]["base_url"] = "https://lists.example.org"


def test_a_digest_links_the_web_forum_like_every_post_copy(
    web_forum: None, als: str, post: Any, clock: Clock, scheduler: Any, drain: Any,
    sink: Sink,
) -> None:
    seed_thread(post, clock)
    clock.now = DIGEST_DUE
    scheduler()
    drain()
    (msg,) = digests_to(sink, CAROL)
    copy = sink.to("dave@example.org")[0]
    assert msg["List-Archive"] == copy["List-Archive"] == (
        "<https://lists.example.org/living-with-als/>")


def test_new_text_is_stored_beside_the_full_body(als: str, post: Any, clock: Clock,
                                                 db: Database) -> None:
    seed_thread(post, clock)
    with db.session() as s:
        reply = s.scalars(select(Post).where(Post.message_id == "r1@example.net")).one()
        assert reply.new_text == "Yes, twice a week helps me."
        assert QUESTION in reply.body


def test_send_twice_and_restart_produce_one_digest(
    als: str, post: Any, clock: Clock, cli: Any, scheduler: Any, drain: Any, sink: Sink,
    db: Database,
) -> None:
    seed_thread(post, clock)
    first = cli("digest", "send", LIST, "--date", "2026-11-03")
    assert first.exit_code == 0, first.output
    assert "2 posts, queued for 1 reader" in first.output
    second = cli("digest", "send", LIST, "--date", "2026-11-03")
    assert second.exit_code == 0
    assert "already sent" in second.output
    clock.now = DIGEST_DUE + timedelta(hours=1)
    scheduler()
    scheduler()  # a restart
    clock.now = datetime.now(UTC)  # the CLI queued on the real clock
    drain()
    assert len(digests_to(sink, CAROL)) == 1
    assert count(db, DigestRun, DigestRun.period == "2026-11-03") == 1
    # --force sends it once more, on purpose.
    forced = cli("digest", "send", LIST, "--date", "2026-11-03", "--force")
    assert forced.exit_code == 0, forced.output
    clock.now = datetime.now(UTC)
    drain()
    assert len(digests_to(sink, CAROL)) == 2
    listing = cli("digest", "list", LIST, "--json")
    assert listing.exit_code == 0, listing.output
    runs = [(r["period"], r["serial"], r["posts"], r["recipients"], r["sent"])
            for r in json.loads(listing.output)]
    # Nothing for the quiet days before the first post.
    assert runs == [("2026-11-03", 1, 2, 1, 1), ("2026-11-03", 0, 2, 1, 1)]


def test_period_missed_while_down_is_sent_on_start_and_empty_days_send_nothing(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> None:
    seed_thread(post, clock)
    clock.now = DIGEST_DUE + timedelta(days=3, hours=5)  # down from Monday to Friday noon
    scheduler()
    drain()
    (msg,) = digests_to(sink, CAROL)
    assert "3 Nov 2026" in msg["Subject"]
    # The quiet days are recorded as done and sent nothing.
    with db.session() as s:
        runs = dict(s.execute(select(DigestRun.period, DigestRun.recipients)).all())
    assert runs["2026-11-03"] == 1
    assert runs["2026-11-04"] == runs["2026-11-05"] == runs["2026-11-06"] == 0
    assert count(db, Delivery, Delivery.digest_id.is_not(None)) == 1


def test_cli_send_of_a_day_without_posts_sends_nothing(als: str, cli: Any, db: Database) -> None:
    result = cli("digest", "send", LIST, "--date", "2026-11-03")
    assert result.exit_code == 0, result.output
    assert "no posts, nothing sent" in result.output
    assert count(db, Delivery) == 0
    preview = cli("digest", "preview", LIST, "--date", "2026-11-03")
    assert preview.exit_code == 0
    assert "no digest would be sent" in preview.output


def test_preview_prints_the_digest_without_sending(
    als: str, post: Any, clock: Clock, cli: Any, db: Database
) -> None:
    seed_thread(post, clock)
    result = cli("digest", "preview", LIST, "--date", "2026-11-03")
    assert result.exit_code == 0, result.output
    body = SEED_TEXT.split("-- \n")[0]
    assert result.output == f"Subject: {digest_subject()}\n\n{body}"
    assert count(db, DigestRun) == 0
    assert count(db, Delivery, Delivery.digest_id.is_not(None)) == 0


def digest_subject() -> str:
    return "Living with ALS — daily digest, 3 Nov 2026: 1 new thread, 1 reply"


@pytest.mark.parametrize("args, message", [
    (["--date", "27/11/2026"], "invalid date '27/11/2026': use YYYY-MM-DD"),
    (["--date", "2999-01-01"], "ends at 2999-01-01T07:00:00+00:00; use --force"),
])
def test_cli_send_rejects_bad_dates_in_one_line(als: str, cli: Any, args: list[str],
                                                message: str) -> None:
    result = cli("digest", "send", LIST, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_digest_of_unknown_list_is_one_line(cli: Any, db: Database) -> None:
    result = cli("digest", "preview", "nope")
    assert result.exit_code != 0
    assert result.output.strip() == "Error: no such list: nope"


def test_replying_to_a_thread_address_of_a_digest_lands_in_that_thread(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink, db: Database
) -> None:
    seed_thread(post, clock)
    clock.now = DIGEST_DUE
    scheduler()
    drain()
    (msg,) = digests_to(sink, CAROL)
    text, _ = parts(msg)
    address = text.split("Reply to this thread: ")[1].split()[0]
    # Carol's client replies to the digest: its subject, no In-Reply-To, no References.
    reply = make_message("Carol Cole <carol@example.com>", "Re: " + str(msg["Subject"]),
                         "Massage helped my mother too.", to=address,
                         message_id="c1@example.com")
    assert post(reply, to=[address]).code == 250
    with db.session() as s:
        (thread,) = s.scalars(select(Thread)).all()
        assert thread.subject == "Massage therapy?"
        assert thread.post_count == 3
        stored = s.scalars(select(Post).where(Post.message_id == "c1@example.com")).one()
        assert stored.thread_id == thread.id


def test_reply_to_an_each_message_delivery_lands_in_its_thread(
    als: str, post: Any, clock: Clock, drain: Any, sink: Sink, db: Database
) -> None:
    seed_thread(post, clock)
    drain()
    delivered = sink.to("dave@example.org")[0]
    reply_to = email.utils.parseaddr(str(delivered["Reply-To"]))[1]
    assert reply_to == "living-with-als+t1@lists.example.org"
    # A client that keeps neither In-Reply-To nor the subject.
    reply = make_message("dave@example.org", "my experience", "Weekly massage, no change.",
                         to=reply_to, message_id="dv@example.org")
    assert post(reply, to=[reply_to]).code == 250
    with db.session() as s:
        stored = s.scalars(select(Post).where(Post.message_id == "dv@example.org")).one()
        assert s.get_one(Thread, stored.thread_id).subject == "Massage therapy?"


@pytest.mark.parametrize("tag", ["t999", "tx1", "t", "x1", "t1t"])
def test_foreign_or_malformed_thread_tag_is_a_plain_post(
    als: str, post: Any, clock: Clock, cli: Any, db: Database, tag: str
) -> None:
    seed_thread(post, clock)
    assert cli("lists", "create", "caregivers", "--title", "Caregivers").exit_code == 0
    assert cli("members", "add", "caregivers", "alice@example.org").exit_code == 0
    other = make_message("alice@example.org", "Respite care", "Where do you find it?",
                         to="caregivers@lists.example.org", message_id="o1@example.org")
    assert post(other, to=["caregivers@lists.example.org"]).code == 250
    address = f"living-with-als+{tag}@lists.example.org"
    msg = make_message("alice@example.org", "A new question", "Anyone tried yoga?",
                       to=address, message_id="n1@example.org")
    assert post(msg, to=[address]).code == 250
    with db.session() as s:
        stored = s.scalars(select(Post).where(Post.message_id == "n1@example.org")).one()
        thread = s.get_one(Thread, stored.thread_id)
        assert thread.subject == "A new question"
        assert thread.post_count == 1


def test_thread_tag_of_another_list_is_a_plain_post(
    als: str, post: Any, clock: Clock, cli: Any, db: Database
) -> None:
    assert cli("lists", "create", "caregivers", "--title", "Caregivers").exit_code == 0
    assert cli("members", "add", "caregivers", "alice@example.org").exit_code == 0
    other = make_message("alice@example.org", "Respite care", "Where do you find it?",
                         to="caregivers@lists.example.org", message_id="o1@example.org")
    assert post(other, to=["caregivers@lists.example.org"]).code == 250
    with db.session() as s:
        foreign = s.scalars(select(Thread.id)).one()
    address = f"living-with-als+t{foreign}@lists.example.org"
    msg = make_message("alice@example.org", "Respite care", "Here too?", to=address,
                       message_id="n2@example.org")
    assert post(msg, to=[address]).code == 250
    with db.session() as s:
        stored = s.scalars(select(Post).where(Post.message_id == "n2@example.org")).one()
        assert stored.thread_id != foreign
        assert s.get_one(Thread, stored.thread_id).list_id != s.get_one(Thread, foreign).list_id


def test_html_in_a_post_is_escaped_in_the_digest(
    als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink
) -> None:
    clock.now = MONDAY
    hostile = ("Look: <script>alert('x')</script>\n"
               "<img src=x onerror=\"alert(1)\">\n"
               "</div></td></tr></table><a href=\"javascript:alert(2)\">win</a>")
    msg = make_message("Mallory <alice@example.org>", "<b>Bold</b> & <i>sneaky</i>", hostile,
                       message_id="h1@example.org")
    assert post(msg).code == 250
    clock.now = DIGEST_DUE
    scheduler()
    drain()
    (delivered,) = digests_to(sink, CAROL)
    text, html = parts(delivered)
    lowered = html.lower()
    for markup in ("<script", "<img", "</table><a", "javascript:alert(2)\">", "<b>bold", "<i>"):
        assert markup not in lowered
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "&lt;/div&gt;&lt;/td&gt;" in html
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; &lt;i&gt;sneaky&lt;/i&gt;" in html
    assert html.count("</table>") == 1  # only the table of contents' own
    # The plain part shows the author's text as written.
    assert "<script>alert('x')</script>" in text


# -- periods, days and daylight saving -------------------------------------------------------
def hourly(start: datetime, hours: int) -> list[datetime]:
    return [start + timedelta(hours=h) for h in range(hours)]


@pytest.mark.parametrize("hour", [0, 1, 2, 7, 23])
@pytest.mark.parametrize("around", [date(2026, 3, 8), date(2026, 11, 1)])
def test_dst_changes_neither_skip_nor_double_a_day(hour: int, around: date) -> None:
    tz = "America/New_York"
    sent: list[str] = []
    start = datetime.combine(around - timedelta(days=3), datetime.min.time(), tzinfo=UTC)
    for minute in range(0, 7 * 24 * 60, 10):
        now = start + timedelta(minutes=minute)
        sent += [p.label for p in digest.due(now, hour, tz, sent)
                 if p.day >= around - timedelta(days=2)]
    days = [date.fromisoformat(label) for label in sent]
    assert days == [days[0] + timedelta(days=i) for i in range(len(days))]
    assert len(days) >= 5 and around in days
    # Consecutive periods meet exactly: no post can fall between two digests or into two.
    periods = [digest.period(d, hour, tz) for d in days]
    for a, b in itertools.pairwise(periods):
        assert a.end == b.start


def test_dst_periods_are_23_and_25_hours_long() -> None:
    tz = "America/New_York"
    fall = digest.period(date(2026, 11, 1), 7, tz)  # clocks go back at 02:00 on 1 Nov
    assert fall.start == datetime(2026, 10, 31, 11, 0, tzinfo=UTC)  # 07:00 EDT
    assert fall.end == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # 07:00 EST
    spring = digest.period(date(2026, 3, 8), 7, tz)  # clocks go forward at 02:00
    assert spring.end - spring.start == timedelta(hours=23)
    # 02:00 does not exist on 8 March: the digest goes at 03:00 EDT, once.
    gap = digest.period(date(2026, 3, 8), 2, tz)
    assert gap.end == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


@pytest.fixture
def new_york(config_data: dict[str, Any]) -> None:
    """Lists created in this test keep New York time (set before the config is built)."""
    config_data["lists"]["timezone"] = "America/New_York"


def test_dst_day_digest_in_new_york_holds_its_25_hours(
    new_york: None, als: str, post: Any, clock: Clock, scheduler: Any, drain: Any,
    sink: Sink, db: Database,
) -> None:
    # 07:30 EDT on Saturday 31 Oct, and 06:30 EST on Sunday 1 Nov after the clocks went
    # back: both in the 25 hours of the digest of 1 Nov.
    seed_thread(post, clock, start=datetime(2026, 10, 31, 11, 30, tzinfo=UTC))
    clock.now = datetime(2026, 11, 1, 11, 30, tzinfo=UTC)
    late = make_message("Dave Dunn <dave@example.org>", "Sunday walk", "Anyone walking today?",
                        message_id="d1@example.org")
    assert post(late).code == 250
    clock.now = datetime(2026, 11, 1, 11, 59, tzinfo=UTC)  # 06:59 EST: not yet due
    scheduler()
    assert count(db, DigestRun, DigestRun.period == "2026-11-01") == 0
    clock.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # 07:00 EST
    scheduler()
    drain()
    (msg,) = digests_to(sink, CAROL)
    assert msg["Subject"] == ("Living with ALS — daily digest, 1 Nov 2026: "
                              "2 new threads, 1 reply")
    text, _ = parts(msg)
    assert "From: Alice Archer, Sat 31 Oct 2026, 07:30 EDT" in text
    assert "From: Dave Dunn, Sun 01 Nov 2026, 06:30 EST" in text
    clock.advance(hours=23, minutes=59)  # 06:59 EST on 2 Nov: the next one is not due yet
    scheduler()
    drain()
    assert len(digests_to(sink, CAROL)) == 1
    assert count(db, DigestRun, DigestRun.period == "2026-11-02") == 0


# -- pure helpers ----------------------------------------------------------------------------
def test_quoted_printable_pieces_join_into_the_text() -> None:
    text = "caf\u00e9 = " + "x" * 200 + "\n\u00fcber"
    footer = "-- \nbye\n"
    joined = digest.qp(text) + digest.qp(footer)
    msg = email.message_from_bytes(
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + joined,
        policy=default_policy)
    decoded = msg.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
    assert decoded == text + "\n" + footer
    assert max(len(line) for line in joined.split(b"\r\n")) <= 76


def test_wrap_keeps_quote_markers_and_whole_links() -> None:
    url = "https://example.org/" + "a" * 90
    wrapped = digest.wrap("> " + "word " * 30 + "\n" + url)
    lines = wrapped.splitlines()
    assert all(line.startswith("> ") for line in lines[:-1])
    assert lines[-1] == url
    assert all(len(line) <= 78 for line in lines[:-1])


# -- the new text of real replies, through the parser that ingest uses --------------------------
PARSE_MISSES = {
    "talon_sparrow": "policy: we strip the '-- ' signature (talon keeps it)",
    "discourse_html_reply": "message.parse turns HTML into text without **bold** marks",
}
# Without the corpus, one case that skips with corpus_dir's reason.
REPLIES = corpus_files("replies", "*.eml") or [Path("corpus-absent.eml")]


@pytest.mark.parametrize(
    "eml",
    [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=PARSE_MISSES[p.stem]))
     if p.stem in PARSE_MISSES else p for p in REPLIES],
    ids=[p.stem for p in REPLIES],
)
def test_stored_new_text_of_corpus_replies(eml: Path) -> None:
    folder = corpus_dir("replies")
    parsed = parse(eml.read_bytes(), LimitsConfig())
    assert not isinstance(parsed, Malformed), parsed
    expected = (folder / f"{eml.stem}.expected.txt").read_text("utf-8")
    assert normalise(new_text(parsed.text)) == normalise(expected)


# -- two server processes on one database ----------------------------------------------------
@pytest.mark.slow
def test_two_scheduler_processes_send_one_digest(
    als: str, post: Any, clock: Clock, config_file: Path, drain: Any, sink: Sink,
    db: Database, tmp_path: Path,
) -> None:
    # A period that has ended in real time, since the subprocesses use the real clock.
    real_now = datetime.now(UTC)
    due = digest.period(digest.latest_due(real_now, 7, "UTC"), 7, "UTC")
    seed_thread(post, clock, start=due.start + timedelta(hours=1))
    logs = [tmp_path / f"scheduler{i}.log" for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "listserv", "-c", str(config_file), "serve",
                          "--role", "scheduler"], stdout=log.open("w"),
                         stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for log in logs
    ]
    try:
        for log in logs:
            wait_for(lambda log=log: "digest check done" in log.read_text(),
                     f"a digest check in {log.name}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait(timeout=15)
    outputs = [log.read_text() for log in logs]
    assert all("Traceback" not in out for out in outputs), outputs
    assert [p.returncode for p in procs] == [0, 0]
    assert count(db, DigestRun, DigestRun.period == due.label) == 1
    clock.now = datetime.now(UTC)  # the processes queued on the real clock
    drain()
    assert len(digests_to(sink, CAROL)) == 1


def test_digest_is_dkim_signed_for_each_reader(
    signed: Any, als: str, post: Any, clock: Clock, scheduler: Any, drain: Any, sink: Sink
) -> None:
    seed_thread(post, clock)
    clock.now = DIGEST_DUE
    scheduler()
    drain()
    (digest_copy,) = [r for r in sink.received if CAROL in r.rcpt_tos
                      and "daily digest" in str(r.message["Subject"])]
    assert dkim.verify(digest_copy.content, dnsfunc=signed)
    # The per-reader footer is inside the signed body.
    assert not dkim.verify(digest_copy.content.replace(b"carol@example.com.",
                                                       b"mallory@example.com"),
                           dnsfunc=signed)


def test_a_new_list_opens_no_digests_for_the_days_before_it_existed(
    als: str, clock: Clock, scheduler: Any, db: Database
) -> None:
    with db.session() as s:
        s.execute(update(MailingList).values(created_at=datetime(2026, 11, 2, 12, 0, tzinfo=UTC)))
    clock.now = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
    scheduler()
    with db.session() as s:
        periods = sorted(s.scalars(select(DigestRun.period)))
    # The mornings after its creation; none of the week before it (the catch-up window).
    assert periods == ["2026-11-03", "2026-11-04", "2026-11-05"]
