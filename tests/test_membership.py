"""Joining and leaving by email only: confirmations, tokens, -request commands, robots."""

from __future__ import annotations

import json
import re
from email.message import Message
from email.utils import parseaddr
from typing import Any

import dkim
import pytest
from sqlalchemy import select

from listserv.store.database import Database
from listserv.store.models import Member, Post

from .conftest import LIST, Clock, Sink, count, make_message

pytestmark = pytest.mark.both_databases

DOMAIN = "lists.example.org"
JOIN = f"living-with-als-join@{DOMAIN}"
LEAVE = f"living-with-als-leave@{DOMAIN}"
REQUEST = f"living-with-als-request@{DOMAIN}"
OWNER = f"living-with-als-owner@{DOMAIN}"
NEW = "frank@example.net"


def members(cli: Any) -> list[str]:
    result = cli("members", "list", LIST, "--json")
    assert result.exit_code == 0, result.output
    return [row["address"] for row in json.loads(result.output)]


def text(msg: Message) -> str:
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(msg.get_content_charset() or "utf-8")


def send(post: Any, sender: str, to: str, subject: str = "", body: str = "",
         **kw: Any) -> Any:
    """A message from `sender` (From and envelope) to one address; asserts the 250."""
    reply = post(make_message(sender, subject, body, to=to, **kw), to=[to], sender=sender)
    assert reply.code == 250, reply.text
    return reply


def last(sink: Sink, address: str) -> Message:
    received = sink.to(address)
    assert received, f"nothing sent to {address}"
    return received[-1]


def confirm_address(msg: Message) -> str:
    return parseaddr(str(msg["Reply-To"]))[1]


def personal_leave_address(welcome: Message) -> str:
    match = re.search(r"(living-with-als-leave\+\S+@lists\.example\.org)", text(welcome))
    assert match, text(welcome)
    return match[1]


def test_join_confirm_welcome_post_leave_cycle_by_email_only(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any, db: Database
) -> None:
    reply = send(post, f"Frank Fisher <{NEW}>", JOIN, "please add me", "hi",
                 message_id="join@example.net")
    assert "answer comes by email" in reply.text
    drain()
    confirm = last(sink, NEW)
    assert confirm["Subject"] == "Confirm your subscription to Living with ALS"
    assert confirm["Auto-Submitted"] == "auto-replied"
    assert confirm["In-Reply-To"] == "<join@example.net>"
    assert sink.received[-1].mail_from == f"living-with-als-bounces@{DOMAIN}"
    assert NEW not in members(cli)  # nothing changes before the mailbox confirms

    # The newcomer simply replies to the confirmation.
    send(post, NEW, confirm_address(confirm), "Re: " + str(confirm["Subject"]), "> quoted")
    drain()
    welcome = last(sink, NEW)
    assert welcome["Subject"] == "Welcome to Living with ALS"
    body = text(welcome)
    assert f"To post, write to {LIST}" in body
    assert '"digest on"' in body and REQUEST in body
    assert NEW in members(cli)
    with db.session() as s:
        assert s.scalar(select(Member.display_name).where(Member.address == NEW)) == \
            "Frank Fisher"

    # As a member, Frank posts and everyone who reads each message gets it.
    send(post, NEW, LIST, "Hello all", "Glad to be here.", message_id="hello@example.net")
    drain()
    assert [m["Message-ID"] for m in sink.to("dave@example.org")] == ["<hello@example.net>"]

    # The personal leave address in the welcome removes him at once, with a goodbye.
    send(post, NEW, personal_leave_address(welcome), "bye", "")
    drain()
    goodbye = last(sink, NEW)
    assert goodbye["Subject"] == "You have left Living with ALS"
    assert NEW not in members(cli)


def test_leave_without_token_asks_the_mailbox_first(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    send(post, "bob@example.net", LEAVE, "unsubscribe", "")
    drain()
    ask = last(sink, "bob@example.net")
    assert ask["Subject"] == "Confirm that you want to leave Living with ALS"
    assert "bob@example.net" in members(cli)
    send(post, "bob@example.net", confirm_address(ask), "Re: confirm", "")
    drain()
    assert last(sink, "bob@example.net")["Subject"] == "You have left Living with ALS"
    assert "bob@example.net" not in members(cli)


def test_nobody_can_subscribe_a_third_party(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    # Mallory writes as herself but names the victim in From: the answer goes to the
    # envelope sender, so the only address that can be confirmed is Mallory's own.
    reply = post(make_message("victim@example.com", "subscribe", "", to=REQUEST),
                 to=[REQUEST], sender="mallory@example.com")
    assert reply.code == 250
    drain()
    assert sink.to("victim@example.com") == []
    # Forging the envelope too sends the confirmation to the victim, who ignores it.
    post(make_message("victim@example.com", "subscribe", "", to=REQUEST), to=[REQUEST],
         sender="victim@example.com")
    drain()
    token_mail = last(sink, "victim@example.com")
    # Mallory cannot confirm without the token, and a made-up token does nothing.
    forged = confirm_address(token_mail).replace("+j-", "+j-9")
    send(post, "mallory@example.com", forged, "confirm", "")
    drain()
    assert "victim@example.com" not in members(cli)
    assert "mallory@example.com" not in members(cli)


def test_forged_expired_and_reused_tokens_are_refused_and_change_nothing(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any, clock: Clock
) -> None:
    send(post, NEW, JOIN)
    drain()
    good = confirm_address(last(sink, NEW))

    # Forged: the signature altered by one character.
    local, _, domain = good.partition("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    send(post, NEW, forged)
    drain()
    refused = last(sink, NEW)
    assert refused["Subject"] == "Your confirmation for Living with ALS was not accepted"
    assert "not valid" in text(refused)
    assert NEW not in members(cli)

    # Expired: eight days later the genuine token no longer works.
    clock.advance(days=8)
    send(post, NEW, good)
    drain()
    assert "expired" in text(last(sink, NEW))
    assert NEW not in members(cli)

    # Reused: a fresh token works once; after leaving, replaying it does not re-subscribe.
    send(post, NEW, f"{REQUEST}", "subscribe")
    drain()
    fresh = confirm_address(last(sink, NEW))
    send(post, NEW, fresh)
    drain()
    assert NEW in members(cli)
    send(post, NEW, personal_leave_address(last(sink, NEW)))
    drain()
    assert NEW not in members(cli)
    clock.advance(days=1)  # a new day: the daily answer cap starts again
    send(post, NEW, fresh)
    drain()
    assert "already used" in text(last(sink, NEW))
    assert NEW not in members(cli)


def test_subscribe_answer_is_the_same_for_members_and_strangers(
    als: str, post: Any, drain: Any, sink: Sink
) -> None:
    for address in ("alice@example.org", NEW):
        send(post, address, REQUEST, "subscribe")
    drain()

    def shape(address: str) -> tuple[str, str]:
        msg = last(sink, address)
        body = re.sub(r"\+[a-z0-9-]+@", "+TOKEN@", text(msg)).replace(address, "ADDRESS")
        return str(msg["Subject"]), body

    assert shape("alice@example.org") == shape(NEW)


def modes(cli: Any) -> dict[str, str]:
    listing = json.loads(cli("members", "list", LIST, "--json").output)
    return {r["address"]: r["mode"] for r in listing}


def test_a_change_of_delivery_mode_by_email_waits_for_the_mailbox_to_confirm(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    send(post, "alice@example.org", REQUEST, "digest on", "")
    drain()
    ask = last(sink, "alice@example.org")
    assert ask["Subject"] == "Confirm how you receive Living with ALS"
    assert "one digest a day" in text(ask)
    assert modes(cli)["alice@example.org"] == "each"  # nothing before the mailbox confirms

    # Someone forging Dave's address asks for no mail: Dave is asked, nothing changes.
    send(post, "dave@example.org", REQUEST, "Re: something",
         "nomail on\n\nThanks!\n-- \nDave")
    drain()
    assert "until you ask for it again" in text(last(sink, "dave@example.org"))
    assert modes(cli)["dave@example.org"] == "each"

    # Alice simply replies to the confirmation.
    send(post, "alice@example.org", confirm_address(ask), "Re: " + str(ask["Subject"]), "")
    drain()
    done = last(sink, "alice@example.org")
    assert done["Subject"] == "How you receive Living with ALS"
    assert "as one digest a day" in text(done)
    assert modes(cli)["alice@example.org"] == "digest"

    # The token is spent: replaying it changes nothing more.
    send(post, "alice@example.org", REQUEST, "digest off", "")
    drain()
    back = confirm_address(last(sink, "alice@example.org"))
    send(post, "alice@example.org", back, "Re: confirm", "")
    send(post, "alice@example.org", confirm_address(ask), "Re: confirm", "")
    drain()
    assert "already used" in text(last(sink, "alice@example.org"))
    assert modes(cli)["alice@example.org"] == "each"

    # A non-member is asked the same way, and told at confirmation that nothing changed.
    send(post, NEW, REQUEST, "digest on")
    drain()
    send(post, NEW, confirm_address(last(sink, NEW)), "Re: confirm", "")
    drain()
    assert "not a member" in text(last(sink, NEW))


def test_unknown_command_gets_help(als: str, post: Any, drain: Any, sink: Sink) -> None:
    send(post, NEW, REQUEST, "How do I use this list?", "Please tell me.")
    drain()
    help_msg = last(sink, NEW)
    assert help_msg["Subject"] == "Help for Living with ALS"
    assert "digest on|off" in text(help_msg)
    # Help never reveals who is on the list.
    assert "alice@example.org" not in text(help_msg)


def test_owner_address_reaches_the_owners(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    assert cli("lists", "set", LIST, "--owner", "olga@example.org").exit_code == 0
    send(post, NEW, OWNER, "A question for the owners", "Who runs this list?",
         message_id="q@example.net")
    drain()
    (forwarded,) = sink.to("olga@example.org")
    assert forwarded["Message-ID"] == "<q@example.net>"
    assert sink.to(NEW) == []


def test_owner_mail_from_a_gmail_author_is_forwarded_from_the_list_and_passes_dmarc(
    signed: Any, als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    """Gmail publishes p=reject: forwarded with her own From, Grace's question would be
    refused by the owners' provider. It arrives From the list's owner address, signed by
    the list's domain, with Grace in Reply-To and her Greek name exactly as she wrote it."""
    assert cli("lists", "set", LIST, "--owner", "olga@example.org").exit_code == 0
    grace = "grace.hopper@gmail.com"
    question = make_message(f"Γρηγόρης Παπαδόπουλος <{grace}>", "Μια ερώτηση",
                            "Who runs this list?", to=OWNER, message_id="q@gmail.com",
                            headers={"DKIM-Signature": "v=1; a=rsa-sha256; d=gmail.com; "
                                                       "s=20230601; h=from; bh=x; b=y"})
    assert post(question, to=[OWNER], sender=grace).code == 250
    drain()
    (received,) = [r for r in sink.received if "olga@example.org" in r.rcpt_tos]
    forwarded = received.message
    assert parseaddr(str(forwarded["From"]))[1] == OWNER
    assert str(forwarded["From"]).startswith("Γρηγόρης Παπαδόπουλος via Living with ALS")
    assert parseaddr(str(forwarded["Reply-To"]))[1] == grace
    assert str(forwarded["Reply-To"]).startswith("Γρηγόρης Παπαδόπουλος")
    assert forwarded["Subject"] == "Μια ερώτηση"
    assert forwarded["Message-ID"] == "<q@gmail.com>"
    # One signature, ours, aligned with the From domain (what DMARC checks).
    (signature,) = forwarded.get_all("DKIM-Signature")
    assert "d=lists.example.org" in signature.replace(" ", "")
    assert dkim.verify(received.content, dnsfunc=signed)


def test_postmaster_in_any_case_or_without_a_domain_reaches_the_list_owners(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    """RFC 5321 4.5.1: postmaster@ must be accepted. Without [bounces] owners, a remote
    admin's note reaches the owners of the lists on that domain, From the postmaster
    address with the writer in Reply-To; our own forward coming back goes nowhere."""
    assert cli("lists", "set", LIST, "--owner", "olga@example.org").exit_code == 0
    admin = "hostmaster@mx.example.net"
    for n, to in enumerate([f"postmaster@{DOMAIN}", "PostMaster@Lists.Example.ORG",
                            "postmaster"]):
        note = make_message(f"Ingrid Åström <{admin}>", f"Your server, note {n}",
                            "Your list sends too fast.", to=to, message_id=f"pm{n}@example.net")
        reply = post(note, to=[to], sender=admin)
        assert reply.code == 250, reply.text
    drain()
    forwards = [r for r in sink.received if r.rcpt_tos == ["olga@example.org"]]
    assert [r.message["Subject"] for r in forwards] == [
        "Your server, note 0", "Your server, note 1", "Your server, note 2"]
    assert {r.mail_from for r in forwards} == {"<>"}  # a failed forward never loops back
    forwarded = forwards[0].message
    assert parseaddr(str(forwarded["From"]))[1] == f"postmaster@{DOMAIN}"
    assert str(forwarded["Reply-To"]) == f"Ingrid Åström <{admin}>"
    sink.received.clear()
    assert post(forwards[0].content, to=[f"postmaster@{DOMAIN}"], sender="").code == 250
    drain()
    assert sink.received == []
    # Nobody can make a list of it.
    refused = cli("lists", "create", "postmaster", "--title", "Postmaster")
    assert refused.exit_code != 0 and "reserved" in refused.output


@pytest.fixture
def site_owners(config_data: dict[str, Any]) -> None:
    config_data["bounces"] = {"owners": "root@example.org, noc@example.org"}


def test_postmaster_goes_to_the_site_owners_when_configured(
    site_owners: None, als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    assert cli("lists", "set", LIST, "--owner", "olga@example.org").exit_code == 0
    report = make_message("abuse@mx.example.net", "Abuse report", "Spam from your host?",
                          to=f"postmaster@{DOMAIN}", message_id="abuse@example.net",
                          headers={"Auto-Submitted": "auto-generated"})
    assert post(report, to=[f"postmaster@{DOMAIN}"]).code == 250
    drain()
    assert sorted(sink.recipients()) == ["noc@example.org", "root@example.org"]
    # Other domains' postmasters are not ours to serve.
    other = make_message("x@example.net", "hi", "hi", to="postmaster@example.com")
    assert post(other, to=["postmaster@example.com"]).code == 550


def test_out_of_office_reply_to_a_post_is_not_posted_and_not_answered(
    als: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    send(post, "alice@example.org", LIST, "Question", "Anyone?", message_id="q1@example.org")
    drain()
    before = len(sink.received)
    oof = make_message("bob@example.net", "Out of Office: [Living with ALS] Question",
                       "I am away until Monday.", message_id="oof@example.net",
                       in_reply_to="q1@example.org",
                       headers={"Auto-Submitted": "auto-replied"})
    for target in (LIST, REQUEST):
        assert post(oof, to=[target], sender="bob@example.net").code == 250
    drain()
    assert len(sink.received) == before
    assert count(db, Post) == 1


def test_loop_with_an_unmarked_auto_responder_terminates(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    """A responder that answers everything and marks nothing: the daily cap ends the loop."""
    bot = "bot@example.com"
    send(post, bot, REQUEST, "hello", "is anyone there?")
    answered = 0
    for _round in range(20):
        drain()
        incoming = sink.to(bot)
        if len(incoming) == answered:
            break
        for msg in incoming[answered:]:
            reply_to = parseaddr(str(msg["Reply-To"] or msg["From"]))[1]
            send(post, bot, reply_to, "Re: " + str(msg["Subject"]), "Thanks for your mail.")
        answered = len(incoming)
    else:
        raise AssertionError("the loop did not end")
    assert answered == 5  # [security] notices_per_day
    assert bot not in members(cli)


def test_list_unsubscribe_of_a_delivered_post_removes_that_member_only(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    send(post, "alice@example.org", LIST, "News", "hello", message_id="n@example.org")
    drain()
    headers = {r.rcpt_tos[0]: r.message["List-Unsubscribe"] for r in sink.received}
    assert len(sink.received) == 2  # Bob and Dave, one SMTP transaction each
    assert headers["bob@example.net"] != headers["dave@example.org"]
    mailto = parseaddr(headers["dave@example.org"].strip("<>").removeprefix("mailto:"))[1]

    # Nobody can make such an address for somebody else.
    forged = mailto.replace("+u-", "+u-1")
    send(post, "bob@example.net", forged, "unsubscribe")
    drain()
    assert "dave@example.org" in members(cli)

    send(post, "dave@example.org", mailto, "unsubscribe")
    drain()
    assert last(sink, "dave@example.org")["Subject"] == "You have left Living with ALS"
    assert members(cli) == ["alice@example.org", "bob@example.net", "carol@example.com",
                            "erin@example.org"]


@pytest.fixture
def impersonal(config_data: dict[str, Any]) -> None:
    config_data["security"] = {"personal_unsubscribe": False}


def test_generic_leave_address_when_personal_unsubscribe_is_off(
    impersonal: None, als: str, post: Any, drain: Any, sink: Sink
) -> None:
    send(post, "alice@example.org", LIST, "News", "hello", message_id="n@example.org")
    drain()
    # Still one transaction per member (its VERP sender), but one identical message.
    assert sorted(r for m in sink.received for r in m.rcpt_tos) == [
        "bob@example.net", "dave@example.org"]
    assert {m.message["List-Unsubscribe"] for m in sink.received} == {f"<mailto:{LEAVE}>"}


def test_a_token_works_only_at_its_own_address(
    als: str, post: Any, drain: Any, sink: Sink, cli: Any
) -> None:
    send(post, NEW, JOIN)
    drain()
    token = confirm_address(last(sink, NEW)).partition("+")[2].partition("@")[0]
    send(post, NEW, f"living-with-als-leave+{token}@{DOMAIN}")
    drain()
    assert "does not belong" in text(last(sink, NEW))
    assert NEW not in members(cli)
    send(post, NEW, REQUEST, f"confirm {token}")
    drain()
    assert NEW in members(cli)


def test_our_own_notice_coming_back_is_not_answered(
    als: str, post: Any, drain: Any, sink: Sink
) -> None:
    send(post, NEW, REQUEST, "help")
    drain()
    (notice,) = sink.received
    # A forwarder bounces our help message straight back to the -request address.
    reply = post(notice.content, to=[REQUEST], sender=NEW)
    assert reply.code == 250
    drain()
    assert len(sink.received) == 1


def test_db_init_creates_the_token_secret_once(cli: Any, db: Database) -> None:
    from listserv.store.models import Setting

    assert cli("db", "init").exit_code == 0
    with db.session() as s:
        first = s.scalars(select(Setting.value)).all()
    assert cli("db", "init").exit_code == 0
    with db.session() as s:
        assert s.scalars(select(Setting.value)).all() == first
    assert len(first) == 1 and len(first[0]) == 64


def test_one_message_to_the_list_and_its_request_address(
    als: str, post: Any, drain: Any, sink: Sink, db: Database
) -> None:
    msg = make_message("alice@example.org", "digest on", "also a post", to=LIST,
                       message_id="both@example.org")
    reply = post(msg, to=[LIST, REQUEST], sender="alice@example.org")
    assert reply.code == 250
    drain()
    assert [m["Message-ID"] for m in sink.to("dave@example.org")] == ["<both@example.org>"]
    assert "one digest a day" in text(last(sink, "alice@example.org"))
