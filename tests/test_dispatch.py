"""The one table from an address role to its inbound handler (the stories of each role,
over real sockets, are in their own test files)."""

from __future__ import annotations

import inspect

import pytest

from listserv.core.addresses import Route
from listserv.core.aliases import alias
from listserv.inbound import dispatch

LIST = "als@lists.example.org"
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
    signatures = {str(inspect.signature(h)) for h in dispatch.HANDLERS.values()}
    assert len(signatures) == 1
    assert list(dispatch.HANDLERS) == ["relay", "postmaster", "reports", "requests", "posts"]
