"""[dmarc] lookup: authors whose domain publishes p=none keep their From; everyone else, and
every author when the lookup fails, gets the DMARC-safe "via" From."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

import pytest

from listserv.core import dmarc
from listserv.outbound.dmarc import Policies
from listserv.outbound.outbox import Outbox

from .conftest import LIST, Sink, make_message

RECORDS = {
    "_dmarc.relaxed.example": ["v=DMARC1; p=none; rua=mailto:d@relaxed.example"],
    "_dmarc.strict.example": ["v=DMARC1; p=reject"],
    "_dmarc.example.org": ["v=DMARC1; p=none; sp=reject"],
}


@pytest.mark.parametrize("own, org, expected", [
    (["v=DMARC1; p=none"], None, "none"),
    (["v=DMARC1;p=Reject"], None, "reject"),
    (["some other txt", "v=DMARC1; p=quarantine"], None, "quarantine"),
    (["v=DMARC1; p=none", "v=DMARC1; p=reject"], None, None),  # two records: invalid
    ([], ["v=DMARC1; p=none; sp=reject"], "reject"),  # subdomain: sp= of the org domain
    ([], ["v=DMARC1; p=none"], "none"),
    ([], [], None),
    (["v=DMARC1; p=bogus"], None, None),
])
def test_policy(own: list[str], org: list[str] | None, expected: str | None) -> None:
    assert dmarc.policy(own, org) == expected


def test_policies_are_cached_and_failures_mean_rewrite() -> None:
    asked: list[str] = []
    ticks = [0.0]

    def lookup(name: str) -> list[str]:
        asked.append(name)
        return RECORDS.get(name, [])

    policies = Policies(lookup, ttl=60, monotonic=lambda: ticks[0])
    assert policies.keeps_from("a@relaxed.example")
    assert policies.keeps_from("b@relaxed.example")
    assert asked == ["_dmarc.relaxed.example"]
    assert not policies.keeps_from("a@mail.example.org")  # sp=reject
    assert not policies.keeps_from("a@unreachable.example")  # no answer: rewrite
    ticks[0] = 61
    policies.keeps_from("a@relaxed.example")
    assert asked.count("_dmarc.relaxed.example") == 2


@pytest.fixture
def dmarc_on(config_data: dict[str, Any]) -> None:
    config_data["dmarc"] = {"lookup": True, "timeout": 1.0}


def test_post_from_a_p_none_domain_keeps_its_from(dmarc_on: None, als: str, cli: Any,
                                                  post: Any, outbox: Outbox, drain: Any,
                                                  sink: Sink) -> None:
    assert outbox.finisher.dmarc is not None
    outbox.finisher.dmarc = Policies(lambda name: RECORDS.get(name, []), ttl=60)
    for address in ("pat@relaxed.example", "sam@strict.example"):
        assert cli("members", "add", LIST, address).exit_code == 0
    assert post(make_message("Pat <pat@relaxed.example>", "One", "x",
                             message_id="1@relaxed.example")).code == 250
    assert post(make_message("Sam <sam@strict.example>", "Two", "y",
                             message_id="2@strict.example")).code == 250
    drain()
    first, second = sink.to("dave@example.org")
    assert parseaddr(str(first["From"])) == ("Pat", "pat@relaxed.example")
    assert parseaddr(str(second["From"])) == ("Sam via Living with ALS", LIST)


def test_without_lookup_every_from_is_rewritten(als: str, cli: Any, post: Any,
                                                outbox: Outbox, drain: Any,
                                                sink: Sink) -> None:
    assert outbox.finisher.dmarc is None
    assert cli("members", "add", LIST, "pat@relaxed.example").exit_code == 0
    assert post(make_message("Pat <pat@relaxed.example>", "One", "x",
                             message_id="1@relaxed.example")).code == 250
    drain()
    (delivered,) = sink.to("dave@example.org")
    assert parseaddr(str(delivered["From"])) == ("Pat via Living with ALS", LIST)
