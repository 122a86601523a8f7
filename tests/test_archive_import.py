"""Moving to listserv and away from it: an owner imports the years of mail of the old list
(pipermail, Google Takeout, Thunderbird, Maildir, a folder of .eml), and exports them again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from listserv.core import mbox
from listserv.store.database import Database
from listserv.store.models import Delivery, FanoutJob, Member, Post, Thread
from tests.conftest import Sink, count
from tests.corpus import CORPUS

# Mailman 2's pipermail: mboxo, addresses obfuscated, body "From " quoted with one ">",
# and a reply (<p3>) before the message it answers (<p2>).
PIPERMAIL = b"""\
From alice at example.org  Mon Jan  8 10:00:00 2024
From: alice at example.org (Alice Archer)
Date: Mon, 08 Jan 2024 10:00:00 +0000
Subject: [Living with ALS] Speech devices
Message-ID: <p1@example.org>

Has anyone tried an eye-gaze device?
>From my experience at the clinic, they take weeks to arrive.

From dave at example.org  Mon Jan  8 14:00:00 2024
From: dave at example.org (Dave Dunn)
Date: Mon, 08 Jan 2024 14:00:00 +0000
Subject: Re: [Living with ALS] Speech devices
In-Reply-To: <p2@example.net>
References: <p1@example.org> <p2@example.net>
Message-ID: <p3@example.org>

Same here, the Tobii one.

From bob at example.net  Mon Jan  8 12:00:00 2024
From: bob at example.net (Bob Baker)
Date: Mon, 08 Jan 2024 12:00:00 +0000
Subject: Re: [Living with ALS] Speech devices
In-Reply-To: <p1@example.org>
References: <p1@example.org>
Message-ID: <p2@example.net>

We use one at home.

From frank at example.com  Tue Jan  9 08:00:00 2024
From: frank at example.com (Frank Fischer)
Date: Tue, 09 Jan 2024 08:00:00 +0000
Subject: [Living with ALS] Ramps for the house
Message-ID: <p4@example.com>

Who built a ramp?

"""

# Google Takeout: a numeric separator with the zone before the year, CRLF line ends,
# encoded words, a multipart message with an attachment, Gmail's own headers.
TAKEOUT = (
    "From 1788000000000000001@xxx Tue Feb 06 09:15:00 +0000 2024\r\n"
    "X-GM-THRID: 1788000000000000001\r\n"
    "X-Gmail-Labels: Forums\r\n"
    "Date: Tue, 6 Feb 2024 09:15:00 +0000\r\n"
    "From: =?UTF-8?Q?Zo=C3=AB_=C3=9Cnal?= <zoe@example.com>\r\n"
    "Subject: =?UTF-8?B?5LuL6K2344Gu44GK55+l44KJ44Gb?=\r\n"
    "Message-ID: <CAG1@mail.gmail.com>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "5LuL6K2344K544Kx44K444Ol44O844Or44KS5YWx5pyJ44GX44G+44GZ44CC\r\n"
    "--b1\r\n"
    'Content-Type: application/pdf; name="plan.pdf"\r\n'
    'Content-Disposition: attachment; filename="plan.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n"
    "--b1--\r\n"
    "\r\n"
    "From 1788000000000000002@xxx Tue Feb 06 10:20:00 +0000 2024\r\n"
    "X-GM-THRID: 1788000000000000001\r\n"
    "Date: Tue, 6 Feb 2024 10:20:00 +0000\r\n"
    "From: Bob Baker <bob@example.net>\r\n"
    "Subject: =?UTF-8?B?UmU6IOS7i+itt+OBruOBiuefpeOCieOBmw==?=\r\n"
    "Message-ID: <CAG2@mail.gmail.com>\r\n"
    "In-Reply-To: <CAG1@mail.gmail.com>\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "\r\n"
    "Thank you, Zo\xeb.\r\n"
    "\r\n"
).encode()

# Thunderbird / mboxrd: "From " lines in bodies quoted at every depth, and a message
# without Message-ID (found again on a second import by its content).
MBOXRD = b"""\
From - Wed Mar 13 18:00:00 2024
From: Carol Cole <carol@example.com>
Date: Wed, 13 Mar 2024 18:00:00 +0000
Subject: Poems from the ward

From the window I see the lake.
>From the door, the hall.
>>From the bed, nothing at all.

From - Wed Mar 13 19:00:00 2024
From: Alice Archer <alice@example.org>
Date: Wed, 13 Mar 2024 19:00:00 +0000
Subject: Re: Poems from the ward
Message-ID: <r2@example.org>
In-Reply-To: <missing-parent@example.com>

Lovely.
From here on, I read one a day.

"""


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def threads_of(db: Database, list_address: str) -> dict[str, set[str]]:
    """Each thread by its subject: the Message-IDs of its posts."""
    with db.session() as s:
        rows = s.execute(
            select(Thread.subject, Post.message_id)
            .join(Post)
            .where(Thread.list_id == Post.list_id, Post.list_id == select_list(list_address))
        )
        found: dict[str, set[str]] = {}
        for subject, mid in rows:
            found.setdefault(subject, set()).add(mid)
        return found


def select_list(address: str) -> Any:
    from listserv.store.models import MailingList

    return select(MailingList.id).where(MailingList.address == address).scalar_subquery()


def test_a_pipermail_archive_is_imported_threaded_and_sent_to_no_one(
    als: str, cli: Any, db: Database, tmp_path: Path
) -> None:
    source = write(tmp_path, "2024-January.txt", PIPERMAIL)
    result = cli("archive", "import", als, str(source))
    assert result.exit_code == 0, result.output
    assert "imported 4, skipped 0 already stored, refused 0" in result.output

    assert threads_of(db, als) == {
        "Speech devices": {"p1@example.org", "p2@example.net", "p3@example.org"},
        "Ramps for the house": {"p4@example.com"},
    }
    with db.session() as s:
        posts = {p.message_id: p for p in s.scalars(select(Post))}
        thread = s.scalar(select(Thread).where(Thread.subject == "Speech devices"))
        assert thread is not None and thread.post_count == 3
        assert thread.started_at == datetime(2024, 1, 8, 10, tzinfo=UTC)
        assert thread.last_activity == datetime(2024, 1, 8, 14, tzinfo=UTC)
    # the reply met before its parent hangs under it
    assert posts["p3@example.org"].parent_id == posts["p2@example.net"].id
    assert posts["p2@example.net"].parent_id == posts["p1@example.org"].id
    # obfuscated authors are addresses again; the quoted body line is the author's
    assert posts["p1@example.org"].author_address == "alice@example.org"
    assert posts["p1@example.org"].author_name == "Alice Archer"
    assert posts["p4@example.com"].author_address == "frank@example.com"
    assert "\nFrom my experience at the clinic" in posts["p1@example.org"].body
    assert posts["p1@example.org"].date == datetime(2024, 1, 8, 10, tzinfo=UTC)
    # nothing is emailed, and Frank, who is no member, is not made one
    assert count(db, FanoutJob) == 0 and count(db, Delivery) == 0
    assert count(db, Member, Member.address == "frank@example.com") == 0

    again = cli("archive", "import", als, str(source), "--json")
    assert again.exit_code == 0, again.output
    figures = json.loads(again.stdout)
    assert (figures["imported"], figures["duplicates"], figures["refused"]) == (0, 4, 0)
    assert count(db, Post) == 4


def test_a_google_takeout_file_keeps_every_script_and_threads_by_in_reply_to(
    als: str, cli: Any, db: Database, tmp_path: Path
) -> None:
    source = write(tmp_path, "All mail Including Spam and Trash.mbox", TAKEOUT)
    result = cli("archive", "import", als, str(source), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 2
    assert threads_of(db, als) == {"介護のお知らせ": {"CAG1@mail.gmail.com", "CAG2@mail.gmail.com"}}
    with db.session() as s:
        first = s.scalar(select(Post).where(Post.message_id == "CAG1@mail.gmail.com"))
        reply = s.scalar(select(Post).where(Post.message_id == "CAG2@mail.gmail.com"))
        assert first is not None and reply is not None
        assert (first.author_name, first.author_address) == ("Zoë Ünal", "zoe@example.com")
        assert "介護スケジュールを共有します。" in first.body
        assert reply.body.strip() == "Thank you, Zoë."


def test_from_lines_in_bodies_survive_and_a_message_without_id_is_found_again(
    als: str, cli: Any, db: Database, tmp_path: Path
) -> None:
    source = write(tmp_path, "Inbox", MBOXRD)
    assert cli("archive", "import", als, str(source)).exit_code == 0
    with db.session() as s:
        poem = s.scalar(select(Post).where(Post.subject == "Poems from the ward"))
        assert poem is not None
        assert poem.body.splitlines()[:3] == [
            "From the window I see the lake.",
            "From the door, the hall.",
            ">From the bed, nothing at all.",
        ]
        reply = s.scalar(select(Post).where(Post.message_id == "r2@example.org"))
        assert reply is not None and "From here on, I read one a day." in reply.body
    again = cli("archive", "import", als, str(source), "--json")
    assert json.loads(again.stdout)["duplicates"] == 2
    assert count(db, Post) == 2


def test_a_broken_message_is_refused_by_position_and_the_rest_imported(
    als: str, cli: Any, db: Database, tmp_path: Path
) -> None:
    broken = b"From - Thu Apr  4 09:00:00 2024\nSubject: nobody wrote this\n\nNo From at all.\n\n"
    source = write(tmp_path, "mixed.mbox", PIPERMAIL + broken)
    result = cli("archive", "import", als, str(source), "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["imported"], figures["refused"]) == (4, 1)
    line = PIPERMAIL.count(b"\n") + 1
    assert figures["refused_messages"] == [
        f"mixed.mbox message at line {line}: no author address in From"
    ]


def test_a_dry_run_stores_nothing(als: str, cli: Any, db: Database, tmp_path: Path) -> None:
    source = write(tmp_path, "2024-January.txt", PIPERMAIL)
    result = cli("archive", "import", als, str(source), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would import 4" in result.output
    assert count(db, Post) == 0 and count(db, Thread) == 0


def test_maildir_and_a_folder_of_eml_files(
    als: str, cli: Any, db: Database, tmp_path: Path
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    emls = tmp_path / "saved"
    emls.mkdir()
    for i, msg in enumerate(synthetic(6)):
        folder = maildir / ("cur" if i % 2 else "new") if i < 3 else emls
        (folder / (f"{i}.eml" if i >= 3 else f"17000{i}.M1P1.host:2,S")).write_bytes(bytes(msg))
    assert cli("archive", "import", als, str(maildir)).exit_code == 0
    result = cli("archive", "import", als, str(emls), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 3
    assert count(db, Post) == 6


def test_unreadable_sources_are_one_line(als: str, cli: Any, tmp_path: Path) -> None:
    missing = cli("archive", "import", als, str(tmp_path / "nope.mbox"))
    assert missing.exit_code == 1
    assert missing.output.strip() == f"Error: {tmp_path / 'nope.mbox'}: no such file or folder"
    single = write(tmp_path, "saved.txt", bytes(synthetic(1)[0]))
    not_mbox = cli("archive", "import", als, str(single))
    assert not_mbox.exit_code == 1
    assert not_mbox.output == (
        "Error: saved.txt: not an mbox (line 1 comes before any From "
        "line); a single message is read with --format eml\n"
    )
    assert cli("archive", "import", als, str(single), "--format", "eml").exit_code == 0
    unknown = cli("archive", "import", "nolist", str(write(tmp_path, "a.mbox", PIPERMAIL)))
    assert unknown.exit_code == 1 and unknown.output.strip() == "Error: no such list: nolist"


def synthetic(n: int, start: datetime = datetime(2023, 5, 1, tzinfo=UTC)) -> list[EmailMessage]:
    """A real-shaped archive: threads of replies, odd MIME, every script, "From " lines."""
    people = [
        ("Alice Archer", "alice@example.org"),
        ("Björn Ødegård", "bjorn@example.no"),
        ("王小明", "xiaoming@example.cn"),
        ("Frank", "frank@example.com"),
    ]
    shapes = ["plain", "alternative", "attachment", "qp", "from-lines", "no-id"]
    messages: list[EmailMessage] = []
    for i in range(n):
        name, address = people[i % len(people)]
        root = i - i % 5  # threads of five: a root and four replies
        msg = EmailMessage()
        msg["From"] = f"{name} <{address}>"
        msg["Subject"] = (
            f"Re: Topic {root} – ünïcode 話題" if i != root else f"Topic {root} – ünïcode 話題"
        )
        msg["Date"] = format_datetime(start + timedelta(minutes=7 * i))
        shape = shapes[i % len(shapes)]
        if shape != "no-id" or i == root:
            msg["Message-ID"] = f"<m{i}@archive.example>"
        if i != root:
            msg["In-Reply-To"] = f"<m{root}@archive.example>"
        text = f"Message {i} from {name}.\nFrom the start, we agreed.\n>From quoted.\n"
        if shape == "qp":
            msg.set_content(text + "é" * 90, cte="quoted-printable")
        elif shape == "alternative":
            msg.set_content(text)
            msg.add_alternative(f"<p>Message {i}</p>", subtype="html")
        elif shape == "attachment":
            msg.set_content(text)
            msg.add_attachment(
                b"%PDF-1.4 binary \x00\xff",
                maintype="application",
                subtype="pdf",
                filename="plan.pdf",
            )
        else:
            msg.set_content(text)
        messages.append(msg)
    return messages


def as_mbox(messages: list[EmailMessage]) -> bytes:
    out = []
    for msg in messages:
        date = msg["Date"].datetime if msg["Date"] else None
        out.append(
            b"".join(
                [
                    mbox.separator("someone@example.org", date),
                    *(mbox.escape(line) for line in bytes(msg).splitlines(True)),
                    b"\n",
                ]
            )
        )
    return b"".join(out)


def snapshot(db: Database, list_address: str) -> set[tuple[Any, ...]]:
    """Every post of the list as a reader sees it, with the first post of its thread and its
    parent by Message-ID (database ids differ between lists)."""
    with db.session() as s:
        posts = s.scalars(select(Post).where(Post.list_id == select_list(list_address))).all()
        by_id = {p.id: p for p in posts}
        first = {}
        for p in sorted(posts, key=lambda p: (p.date, p.id)):
            first.setdefault(p.thread_id, p.message_id)
        return {
            (
                p.message_id,
                p.author_address,
                p.author_name,
                p.subject,
                p.date,
                p.body,
                p.new_text,
                first[p.thread_id],
                by_id[p.parent_id].message_id if p.parent_id else None,
            )
            for p in posts
        }


@pytest.mark.both_databases
def test_export_then_import_into_an_empty_list_gives_the_same_threads(
    als: str, cli: Any, db: Database, tmp_path: Path
) -> None:
    archive = synthetic(300)
    archive.reverse()  # replies before their parents: the order of a file does not matter
    source = write(
        tmp_path,
        "old.mbox",
        as_mbox(archive) + PIPERMAIL + MBOXRD + TAKEOUT.replace(b"\r\n", b"\n"),
    )
    imported = cli("archive", "import", als, str(source), "--json", "--jobs", "2")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["imported"] == 308

    exported = tmp_path / "export.mbox"
    result = cli("archive", "export", als, "-o", str(exported))
    assert result.exit_code == 0, result.output
    assert cli("lists", "create", "moved", "--title", "Moved").exit_code == 0
    moved = "moved@lists.example.org"
    again = cli("archive", "import", moved, str(exported), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["imported"] == 308
    assert snapshot(db, moved) == snapshot(db, als)
    # 60 synthetic threads, pipermail's 2, the poems' 1 (a reply to an absent parent joins
    # by subject), Takeout's 1
    assert len(threads_of(db, moved)) == 60 + 2 + 1 + 1


def test_export_of_one_thread_and_since_a_day(
    als: str, cli: Any, db: Database, tmp_path: Path
) -> None:
    assert cli("archive", "import", als, str(write(tmp_path, "a.mbox", PIPERMAIL))).exit_code == 0
    with db.session() as s:
        thread_id = s.scalar(select(Thread.id).where(Thread.subject == "Speech devices"))
    one = cli("archive", "export", als, "--thread", str(thread_id))
    assert one.exit_code == 0
    assert [line for line in one.stdout.splitlines() if line.startswith("Message-ID")] == [
        "Message-ID: <p1@example.org>",
        "Message-ID: <p2@example.net>",
        "Message-ID: <p3@example.org>",
    ]
    assert ">From my experience" in one.stdout  # mboxrd quoting on the way out
    later = cli("archive", "export", als, "--since", "2024-01-09")
    assert later.stdout.count("Message-ID:") == 1 and "<p4@example.com>" in later.stdout


def test_the_shared_corpus_imports_without_a_crash(als: str, cli: Any, db: Database) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    result = cli("archive", "import", als, str(CORPUS), "--format", "eml", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    total = len(list(CORPUS.rglob("*.eml")))
    assert figures["imported"] + figures["duplicates"] + figures["refused"] == total
    assert figures["imported"] > total // 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice at example.org (Alice Archer)", ("Alice Archer", "alice@example.org")),
        ("bob at example.net", ("", "bob@example.net")),
        ("Carol <carol@example.com>", ("Carol", "carol@example.com")),
        ("nobody", ("", None)),
    ],
)
def test_authors_as_pipermail_wrote_them(value: str, expected: tuple[str, str | None]) -> None:
    assert mbox.author_of(value) == expected


@pytest.mark.parametrize(
    ("line", "after_blank", "expected"),
    [
        (b"From alice at example.org  Mon Jan  8 10:00:00 2024\n", True, True),
        (b"From 1788000000000000001@xxx Tue Feb 06 09:15:00 +0000 2024\r\n", True, True),
        (b"From - Wed Mar 13 18:00:00 2024\n", True, True),
        (b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n", True, True),
        (b"From - Wed Mar 13 18:00:00 2024\n", False, False),
        (b"From the window I see the lake.\n", True, False),
        (b">From - Wed Mar 13 18:00:00 2024\n", True, False),
    ],
)
def test_which_lines_start_a_message(line: bytes, after_blank: bool, expected: bool) -> None:
    assert mbox.is_separator(line, after_blank) is expected


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (b"From here\n", b">From here\n"),
        (b">From here\n", b">>From here\n"),
        (b"Fromage\n", b"Fromage\n"),
        (b" From here\n", b" From here\n"),
    ],
)
def test_mboxrd_quoting_round_trips(written: bytes, read: bytes) -> None:
    assert mbox.escape(written) == read
    assert mbox.unescape(read) == written


def test_an_import_of_the_last_days_sends_no_digest(
    als: str, cli: Any, db: Database, tmp_path: Path, scheduler: Any, drain: Any, sink: Sink
) -> None:
    """Moving a live list: its archive ends yesterday, and Carol reads the digest. The
    digests the scheduler catches up on hold live posts only."""
    recent = synthetic(5, start=datetime(2026, 11, 26, 10, tzinfo=UTC))
    source = write(tmp_path, "until-yesterday.mbox", as_mbox(recent))
    assert cli("archive", "import", als, str(source)).exit_code == 0
    scheduler()  # 2026-11-27 09:00: the digests of the last seven days are due
    drain()
    assert sink.to("carol@example.com") == []
    assert count(db, Delivery) == 0
