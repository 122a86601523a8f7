"""A member asks to be forgotten (GDPR article 17): the owner runs `listserv members forget`,
and afterwards the database holds the address nowhere, while the threads stay readable."""

from __future__ import annotations

import email
import json
import zipfile
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from listserv.core.forgetting import FORMER_MEMBER, REMOVED
from listserv.outbound.outbox import Outbox
from listserv.store import search
from listserv.store.database import Database, sqlite_path
from listserv.store.models import (
    Delivery,
    Held,
    Member,
    MemberEvent,
    Notice,
    Post,
    SignInRequest,
    Thread,
    WebSession,
)

from .conftest import LIST, Sink, count, make_message
from .test_membership import REQUEST, confirm_address, last, send

ALICE = "alice@example.org"


def a_thread_with_alice(post: Any, outbox: Outbox) -> None:
    """Alice asks, Bob answers quoting her address; the copies to members are queued."""
    assert (
        post(
            make_message(
                f"Alice Archer <{ALICE}>",
                "Eye-gaze devices",
                "Which one do you use?\n-- \nAlice, alice@example.org\n",
                message_id="q1@example.org",
            )
        ).code
        == 250
    )
    assert (
        post(
            make_message(
                "Bob Baker <bob@example.net>",
                "Re: Eye-gaze devices",
                "The Tobii.\n\nAlice Archer <Alice@Example.org> wrote:\n> Which one do you use?\n",
                message_id="a1@example.net",
                in_reply_to="q1@example.org",
            )
        ).code
        == 250
    )
    while outbox.expand_batch():
        pass


def database_text(db: Database) -> bytes:
    """Every byte the database holds: the SQLite file and its log, or PostgreSQL's rows."""
    path = sqlite_path(db.url)
    if path is not None:
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    with db.engine.connect() as conn:
        tables = (
            conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            )
            .scalars()
            .all()
        )
        return b"\n".join(
            str(row).encode() + b"".join(v for v in row if isinstance(v, bytes | memoryview))
            for table in tables
            for row in conn.execute(text(f'SELECT * FROM "{table}"'))
        )


def decoded_mail(db: Database) -> bytes:
    """Every part of every stored message decoded: base64 (a data export's attachments) hides
    an address from a scan of the database's bytes."""
    with db.session() as s:
        stored = [*s.scalars(select(Notice.payload)), *s.scalars(select(Held.raw)),
                  *s.scalars(select(Post.raw))]
    return b"".join(part.get_payload(decode=True) or b"" for raw in stored
                    for part in email.message_from_bytes(raw).walk()
                    if not part.is_multipart())


def alice_gets_her_data_by_email(post: Any, drain: Any, sink: Sink) -> None:
    """Alice asks -request for what the list holds about her, and confirms."""
    send(post, ALICE, REQUEST, "export", "")
    drain()
    send(post, ALICE, confirm_address(last(sink, ALICE)), "Re: confirm", "")
    drain()
    (data,) = [m for m in sink.to(ALICE) if m["Subject"] == "Your data from Living with ALS"]
    assert [p.get_filename() for p in data.iter_attachments()] == ["data.json", "posts.mbox"]


@pytest.mark.both_databases
@pytest.mark.parametrize("erase", [False, True])
def test_a_forgotten_member_is_nowhere_in_the_database(
    als: str, cli: Any, db: Database, post: Any, outbox: Outbox, drain: Any, sink: Sink,
    erase: bool
) -> None:
    alice_gets_her_data_by_email(post, drain, sink)
    a_thread_with_alice(post, outbox)
    assert count(db, Delivery, Delivery.recipient == ALICE, Delivery.status == "queued") == 1
    with db.session() as s:  # Alice has read the archive on the web, too
        at = s.scalar(select(Post.received_at))
        s.add(SignInRequest(address=ALICE, client="192.0.2.7", at=at))
        s.add(WebSession(address=ALICE, created_at=at, expires_at=at))
    with db.transaction() as conn:
        list_pk = conn.scalar(select(Post.list_id))
        assert search.search(conn, list_pk, "which one do you use")
    assert ALICE.encode() in database_text(db)
    assert ALICE.encode() in decoded_mail(db)  # her data.json, sent as base64

    args = ["members", "forget", LIST, "ALICE@example.org", "--yes"]
    result = cli(*args, *(["--erase-posts"] if erase else []))
    assert result.exit_code == 0, result.output
    assert "forgotten: 1 posts now a former member's" in result.output
    assert "1 queued copies dropped" in result.output

    assert ALICE.encode() not in database_text(db).lower()
    assert ALICE.encode() not in decoded_mail(db).lower()
    assert count(db, Member, Member.address == ALICE) == 0
    assert count(db, SignInRequest) == count(db, WebSession) == 0
    with db.transaction() as conn:  # her erased words are not found by search either
        assert bool(search.search(conn, list_pk, "which one do you use")) is not erase
    with db.session() as s:
        question, answer = s.scalars(select(Post).order_by(Post.id)).all()
        assert question.author_name == FORMER_MEMBER
        assert question.message_id == "q1@example.org"  # the thread holds together
        assert answer.parent_id == question.id
        assert (question.body.strip() == REMOVED) is erase
        assert ("Which one do you use?" in question.body) is not erase
        assert f"{FORMER_MEMBER} <former-".encode() in question.raw
        assert "The Tobii." in answer.body and "Alice Archer" in answer.body
        assert s.scalar(select(Thread.post_count)) == 2
        # the owners' report counts it, without the address
        (event,) = s.scalars(select(MemberEvent).where(MemberEvent.kind == "forgotten"))
        assert event.address.endswith("@forgotten.invalid")
    (today,) = json.loads(
        cli(
            "report",
            LIST,
            "--json",
            "--since",
            event.at.date().isoformat(),
            "--until",
            event.at.date().isoformat(),
        ).stdout
    )
    assert today["forgotten"] == 1
    # the others still get their copies (Bob of Alice's question, Dave of both)
    assert count(db, Delivery, Delivery.recipient == "bob@example.net") == 1
    assert count(db, Delivery, Delivery.recipient == "dave@example.org") == 2


def test_forgetting_someone_the_list_never_knew_is_one_line(als: str, cli: Any) -> None:
    result = cli("members", "forget", LIST, "nobody@example.org", "--yes")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: nobody@example.org: not a member of {LIST} and no post from them"
    )


def test_a_member_gets_what_the_list_holds_about_them_and_no_one_else(
    als: str, cli: Any, db: Database, post: Any, outbox: Outbox, tmp_path: Path
) -> None:
    a_thread_with_alice(post, outbox)
    assert (
        post(
            make_message(
                "Alice Archer <alice@example.org>",
                "Re: Eye-gaze devices",
                "Thanks Bob (bob@example.net), and Dave <dave@example.org>.\n",
                message_id="q2@example.org",
                in_reply_to="a1@example.net",
                headers={"Cc": "Carol Cole <carol@example.com>"},
            )
        ).code
        == 250
    )
    out = tmp_path / "alice.zip"
    result = cli("members", "export-data", LIST, "Alice@Example.org", "-o", str(out))
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        data = json.loads(archive.read("data.json"))
        mbox = archive.read("posts.mbox")
    assert data["membership"]["mode"] == "each"
    assert data["membership"]["name"] == "Alice Archer"
    assert [p["message_id"] for p in data["posts"]] == ["q1@example.org", "q2@example.org"]
    assert mbox.count(b"\nFrom: Alice Archer <alice@example.org>") == 2
    assert b"In-Reply-To: <a1@example.net>" in mbox  # threads still hold together
    everything = json.dumps(data).encode() + mbox
    for someone_else in (b"bob@example.net", b"dave@example.org", b"carol@example.com"):
        assert someone_else not in everything
    assert b"Thanks Bob ((address removed)), and Dave <(address removed)>." in mbox
    today = json.loads(cli("report", LIST, "--json").stdout)[-1]
    assert today["data_exports"] == 1


def confirmation(sink: Sink, subject: str) -> str:
    """The address to reply to in the latest confirmation request with this subject."""
    (ask,) = [m for m in sink.to(ALICE) if m["Subject"] == subject]
    return parseaddr(str(ask["Reply-To"]))[1]


def test_by_email_a_member_gets_her_data_then_is_forgotten(
    als: str, cli: Any, db: Database, post: Any, outbox: Outbox, drain: Any, sink: Sink
) -> None:
    a_thread_with_alice(post, outbox)
    ask = make_message(ALICE, "export", "", to=REQUEST)
    assert post(ask, to=[REQUEST]).code == 250
    drain()
    confirm = confirmation(sink, "Confirm that you want your data from Living with ALS")
    assert post(make_message(ALICE, "Re: confirm", "", to=confirm), to=[confirm]).code == 250
    drain()
    (mail,) = [m for m in sink.to(ALICE) if m["Subject"] == "Your data from Living with ALS"]
    files = {p.get_filename(): p.get_payload(decode=True) for p in mail.walk()
             if p.get_filename()}
    data = json.loads(files["data.json"])
    assert data["membership"]["name"] == "Alice Archer"
    assert [p["message_id"] for p in data["posts"]] == ["q1@example.org"]
    assert files["posts.mbox"].count(b"Message-ID: <q1@example.org>") == 1
    assert b"bob@example.net" not in files["posts.mbox"] + files["data.json"]

    assert post(make_message(ALICE, "forget", "", to=REQUEST), to=[REQUEST]).code == 250
    drain()
    confirm = confirmation(sink, "Confirm that Living with ALS should forget you")
    sent_before = len(sink.received)
    assert post(make_message(ALICE, "Re: confirm", "", to=confirm), to=[confirm]).code == 250
    drain()
    assert len(sink.received) == sent_before  # no answer: it would store the address again
    assert ALICE.encode() not in database_text(db).lower()
    assert ALICE.encode() not in decoded_mail(db).lower()
    with db.session() as s:
        assert s.scalar(select(Post.author_name).where(Post.message_id == "q1@example.org")) \
            == FORMER_MEMBER
