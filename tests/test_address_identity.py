"""One mailbox, one member: `A@Example.com` and `a@example.com` are the same person for
membership and duplicates, mail goes to the spelling the member gave, and addresses longer
than RFC 5321 allows are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from listserv.config import Config
from listserv.store import migrate
from listserv.store.database import Database, make_engine
from listserv.store.models import Held

from .conftest import LIST, Sink, count, make_message
from .test_membership import JOIN, LEAVE, confirm_address, last, send

pytestmark = pytest.mark.both_databases


def members(cli: Any) -> list[str]:
    return [row["address"] for row in json.loads(cli("members", "list", LIST, "--json").output)]


def test_one_mailbox_in_two_spellings_is_one_member_and_gets_each_post_once(
    als: str, cli: Any, post: Any, drain: Any, sink: Sink, tmp_path: Path
) -> None:
    added = cli("members", "add", LIST, "Frank.Fox@Example.NET")
    assert added.output == f"added Frank.Fox@example.net to {LIST} (each)\n"
    again = cli("members", "add", LIST, "frank.fox@example.net")
    assert again.exit_code == 1
    assert again.output == (
        f"Error: frank.fox@example.net is already a member of {LIST} as Frank.Fox@example.net\n"
    )
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "FRANK.FOX@example.net,Frank\ngina@example.org,Gina\nGINA@Example.org,Gina again\n"
    )
    imported = cli("members", "import", LIST, str(csv_file))
    assert "added 1, skipped 2, invalid 0" in imported.output
    assert "line 1: Frank.Fox@example.net is already a member" in imported.output
    assert "line 3: gina@example.org is already a member" in imported.output

    assert post(make_message("alice@example.org", "Hello", "Hi all.")).code == 250
    drain()
    frank = [r for r in sink.recipients() if r.lower() == "frank.fox@example.net"]
    assert frank == ["Frank.Fox@example.net"]  # once, spelled as the member gave it
    assert sorted(sink.recipients()) == sorted(
        ["Frank.Fox@example.net", "bob@example.net", "dave@example.org", "gina@example.org"]
    )


def test_a_member_writing_in_another_case_posts_as_a_member(
    als: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    reply = post(make_message("Alice Archer <ALICE@example.org>", "Hello", "Hi all."))
    assert reply.code == 250
    drain()
    assert count(db, Held) == 0
    # Her own copy stays out too, as for any post of hers.
    assert sorted(sink.recipients()) == ["bob@example.net", "dave@example.org"]


def test_joining_and_leaving_by_mail_in_another_case(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    send(post, "BOB@example.net", JOIN, "join", "")
    drain()
    send(post, "BOB@example.net", confirm_address(last(sink, "BOB@example.net")), "Re: c", "")
    drain()
    assert members(cli).count("bob@example.net") == 1
    assert "BOB@example.net" not in members(cli)

    send(post, "Bob@Example.net", LEAVE, "unsubscribe", "")
    drain()
    send(post, "Bob@example.net", confirm_address(last(sink, "Bob@example.net")), "Re: c", "")
    drain()
    assert "bob@example.net" not in members(cli)


def test_addresses_longer_than_rfc_5321_allows_are_refused(als: str, cli: Any) -> None:
    long_local = cli("members", "add", LIST, "a" * 400 + "@example.org")
    assert long_local.exit_code == 1
    assert long_local.output == (
        "Error: '" + "a" * 60 + "...' has a local part of 400 characters (RFC 5321 allows 64)\n"
    )
    assert "Traceback" not in long_local.output
    at_limit = "b" * 64 + "@example.org"
    assert cli("members", "add", LIST, at_limit).exit_code == 0
    long_path = "c" * 10 + "@" + ".".join(["d" * 61] * 4) + ".org"  # each part within
    refused = cli("members", "add", LIST, long_path)
    assert refused.exit_code == 1
    assert "is 262 characters long (RFC 5321 allows 254)" in refused.output
    assert at_limit in members(cli) and len(members(cli)) == 6


def test_upgrade_merges_members_stored_twice_in_different_case(cli: Any, config: Config) -> None:
    engine = make_engine(config.database_url)
    migrate.upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO lists (address, title, description, subject_prefix, from_rewrite,"
                " digest_hour, timezone, created_at) VALUES (:a, 'ALS', '', '', 'always', 7, 'UTC',"
                " CURRENT_TIMESTAMP)"
            ),
            {"a": LIST},
        )
        for address, mode in (
            ("Alice@example.org", "digest"),
            ("alice@example.org", "each"),
            ("bob@example.net", "each"),
        ):
            conn.execute(
                text(
                    "INSERT INTO members (list_id, address, display_name, mode, receive_own_posts,"
                    " joined_at, bounce_score) SELECT id, :address, '', :mode, false,"
                    " CURRENT_TIMESTAMP, 0 FROM lists"
                ),
                {"address": address, "mode": mode},
            )
    engine.dispose()
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    rows = json.loads(cli("members", "list", LIST, "--json").output)
    assert [(r["address"], r["mode"]) for r in rows] == [
        ("Alice@example.org", "digest"),
        ("bob@example.net", "each"),
    ]
