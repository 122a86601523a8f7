"""The one table from an address role to its inbound handler (the stories of each role,
over real sockets, are in their own test files)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import pytest

from listserv.config import Config, LimitsConfig
from listserv.core import aliases, message
from listserv.core.addresses import Route
from listserv.core.aliases import alias
from listserv.core.message import Malformed, Parsed
from listserv.core.replies import Outcome
from listserv.inbound import dispatch
from listserv.inbound import incoming as incoming_module
from listserv.inbound.incoming import Door, Incoming, RoleHandler
from listserv.store.database import Database
from listserv.store.settings import token_secret

from .conftest import LIST as LIST_ALS
from .conftest import make_message

LIST = "als@lists.example.org"
REQUEST = "living-with-als-request@lists.example.org"
BOUNCES = "living-with-als-bounces@lists.example.org"
ALIAS = alias(b"s" * 32, LIST, "ann@example.com")


@pytest.mark.parametrize(
    ("target", "role"),
    [
        (Route("list", LIST, "post"), "posts"),
        (Route("list", LIST, "post", "thread-12"), "posts"),
        (Route("list", LIST, "post", ALIAS), "relay"),
        (Route("list", LIST, "bounces", "7"), "reports"),
        (Route("list", LIST, "fbl"), "reports"),
        (Route("list", LIST, "request"), "requests"),
        (Route("list", LIST, "owner"), "requests"),
        (Route("list", LIST, "join"), "requests"),
        (Route("list", LIST, "leave"), "requests"),
        (Route("list", LIST, "confirm", "token"), "requests"),
        (Route("postmaster", None, "post", "lists.example.org"), "postmaster"),
        (Route("unknown"), None),
        (Route("relay"), None),
    ],
)
def test_each_recipient_has_one_handler_role(target: Route, role: str | None) -> None:
    assert dispatch.role_of(target) == role


def test_every_handler_has_the_same_signature() -> None:
    """One protocol: receive(door, incoming, routes) -> Outcome, awaited by the receiver."""
    protocol = [("door", Door), ("incoming", Incoming), ("routes", Sequence[Route])], Outcome
    for handler in dispatch.HANDLERS.values():
        signature = inspect.signature(handler, eval_str=True)
        assert ([(p.name, p.annotation) for p in signature.parameters.values()],
                signature.return_annotation) == protocol, handler.__module__
        assert inspect.iscoroutinefunction(handler), handler.__module__
    assert list(dispatch.HANDLERS) == ["relay", "postmaster", "reports", "requests", "posts"]


@pytest.fixture
def reached(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Outcome]]:
    """Each handler of the table, watched: the outcome of every role a message reached."""
    seen: dict[str, list[Outcome]] = {}
    for role, handler in dispatch.HANDLERS.items():
        async def watched(door: Door, incoming: Incoming, routes: Sequence[Route],
                          role: str = role, handler: RoleHandler = handler) -> Outcome:
            outcome = await handler(door, incoming, routes)
            seen.setdefault(role, []).append(outcome)
            return outcome
        monkeypatch.setitem(dispatch.HANDLERS, role, watched)
    return seen


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The messages the receiver parsed, one entry per parse."""
    parsed: list[bytes] = []

    def parse(raw: bytes, limits: LimitsConfig) -> Parsed | Malformed:
        parsed.append(raw)
        return message.parse(raw, limits)

    monkeypatch.setattr(incoming_module, "parse", parse)
    return parsed


def test_every_role_is_reached_over_smtp_and_answers_an_outcome_parsing_once(
    als: str, post: Any, db: Database, config: Config, reached: dict[str, list[Outcome]],
    parses: list[bytes],
) -> None:
    with db.session() as session:
        bobs_alias = aliases.alias_address(token_secret(session, config), LIST_ALS,
                                           "bob@example.net")
    bounce = make_message("MAILER-DAEMON@example.net", "Undelivered Mail Returned to Sender",
                          "The mail system could not deliver your message.")
    # (sender, recipients, subject, body) -> the roles it reaches and what each answered
    stories: list[tuple[str, list[str], EmailMessage | None, dict[str, list[Outcome]]]] = [
        ("alice@example.org", [LIST_ALS], None, {"posts": [Outcome.ACCEPTED]}),
        ("alice@example.org", [REQUEST], None, {"requests": [Outcome.COMMAND]}),
        ("", [BOUNCES], bounce, {"reports": [Outcome.DROPPED]}),
        ("alice@example.org", [bobs_alias], None, {"relay": [Outcome.ACCEPTED]}),
        ("alice@example.org", ["postmaster@lists.example.org"], None,
         {"postmaster": [Outcome.ACCEPTED]}),
        # One message, two roles: each answers, the receiver combines; parsed once still.
        ("alice@example.org", [REQUEST, LIST_ALS], None,
         {"requests": [Outcome.COMMAND], "posts": [Outcome.ACCEPTED]}),
    ]
    for n, (sender, to, msg, expected) in enumerate(stories):
        reached.clear()
        parses.clear()
        sent = msg or make_message(sender, "help", "help", to=to[0], message_id=f"{n}@x.org")
        assert post(sent, to=to, sender=sender).code == 250
        assert reached == expected
        assert len(parses) == 1
    assert set(dispatch.HANDLERS) == {role for *_, roles in stories for role in roles}
