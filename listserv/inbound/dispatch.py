"""One way in for every inbound message: the recipients of one SMTP transaction grouped by
the role of their address, and one table from role to handler.

Every handler has the same signature, `(door, incoming, routes) -> Outcome`: `door` is
what the receiver holds (database, config, templates, clock, the group-commit writer),
`incoming` the message with its envelope, `routes` the recipients of the handler's role.
The receiver combines the outcomes into one SMTP reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jinja2 import Environment

from listserv.config import Config
from listserv.core.addresses import Route
from listserv.core.aliases import is_alias
from listserv.core.replies import Outcome, combine
from listserv.inbound import bounces as bouncing
from listserv.inbound import complaints as feedback
from listserv.inbound import postmaster, relay
from listserv.inbound import posts as ingest
from listserv.inbound import requests as membership
from listserv.store.database import Database

# The receiver's log lines keep the receiver's name: operators (and their log filters)
# read "listserv.inbound.smtp[pid]: accepted ...".
log = logging.getLogger("listserv.inbound.smtp")


@dataclass(frozen=True)
class Incoming:
    """One message as the receiver got it: the bytes and the envelope."""

    raw: bytes
    mail_from: str | None  # MAIL FROM as given; "" for the null sender of bounces
    recipients: tuple[str, ...]  # RCPT TO, as given

    @property
    def sender(self) -> str:
        return self.mail_from or ""

    @property
    def to(self) -> str:
        """The recipients for the log."""
        return ",".join(self.recipients)


class Door(Protocol):
    """What a handler needs of the receiver."""

    db: Database
    config: Config
    templates: Environment
    clock: Callable[[], datetime]
    on_post: Callable[[], None]
    committer: ingest.GroupCommitter

    on_held: ingest.OnHeld
    on_command: ingest.OnCommand

    def authenticity(self) -> ingest.Authenticity: ...


RoleHandler = Callable[[Door, Incoming, Sequence[Route]], Awaitable[Outcome]]


def role_of(target: Route) -> str | None:
    """The handler role of one accepted recipient."""
    if target.kind == "postmaster":
        return "postmaster"
    if target.kind != "list":
        return None
    if target.role == "post":
        # Mail to an author's alias is relayed privately, unless it also went to the list.
        return "relay" if is_alias(target.detail) else "posts"
    if target.role in ("fbl", "bounces"):
        return "reports"
    if target.role in membership.ROLES:
        return "requests"
    return None


async def _relay(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    outcome = await asyncio.to_thread(
        relay.receive, door.db, routes, incoming.raw, incoming.sender, door.config, door.clock()
    )
    log.info("alias mail from=%s to=%s: %s", incoming.mail_from, incoming.to, outcome.value)
    return outcome


async def _postmaster(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    domains = [r.detail or door.config.lists.domain.lower() for r in routes]
    outcome = await asyncio.to_thread(
        postmaster.receive,
        door.db,
        door.config,
        domains,
        incoming.raw,
        incoming.sender,
        door.clock(),
    )
    log.info("postmaster mail from=%s: %s", incoming.mail_from, outcome.value)
    door.on_post()
    return outcome


async def _reports(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """A complaint (ARF) unsubscribes; anything else at -bounces is a bounce."""
    removed = await asyncio.to_thread(
        feedback.receive, door.db, routes, incoming.raw, door.config, door.clock()
    )
    bounces = [r for r in routes if r.role == "bounces"]
    if removed is not None:
        log.info(
            "feedback report from=%s: unsubscribed %s",
            incoming.mail_from,
            "; ".join(removed) or "nobody",
        )
    elif bounces:
        found = await asyncio.to_thread(
            bouncing.receive,
            door.db,
            bounces,
            incoming.raw,
            door.config,
            door.templates,
            door.clock(),
            incoming.mail_from,
        )
        log.info(
            "bounce from=%s to=%s: %d recorded (%s)",
            incoming.mail_from,
            incoming.to,
            found.recorded,
            found.detail,
        )
    return Outcome.DROPPED


async def _requests(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    outcome = await asyncio.to_thread(
        membership.receive,
        door.db,
        door.config,
        door.templates,
        routes,
        incoming.raw,
        incoming.sender,
        door.clock(),
    )
    log.info(
        "%s from=%s to=%s",
        outcome.value,
        incoming.mail_from,
        ",".join(r.list_address or "" for r in routes),
    )
    door.on_post()
    return outcome


async def _posts(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """Posts go through the group-commit writer: the reply waits for the commit."""
    # One post per list, even when a list is named twice (plain and thread address).
    posts = list({r.list_address: r for r in reversed(routes)}.values())
    result = await asyncio.wrap_future(
        ingest.receive(
            door.db,
            posts,
            incoming.raw,
            incoming.sender,
            door.config.limits,
            door.clock(),
            door.on_held,
            door.committer,
            door.authenticity(),
            door.on_command,
        )
    )
    log.info(
        "%s from=%s to=%s size=%d: %s",
        result.outcome.value,
        incoming.mail_from,
        incoming.to,
        len(incoming.raw),
        result.detail,
    )
    if result.post_ids:
        door.on_post()
    return result.outcome


# Role -> handler, in the order they run for a message with recipients of several roles.
HANDLERS: dict[str, RoleHandler] = {
    "relay": _relay,
    "postmaster": _postmaster,
    "reports": _reports,
    "requests": _requests,
    "posts": _posts,
}


async def dispatch(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """Hand the message to the handler of each role among its recipients; one outcome.

    Mail only to authors' aliases is relayed privately and nothing else; when it also went
    to the list, the authors get it as a post like everyone else.
    """
    by_role: dict[str, list[Route]] = {}
    for target in routes:
        if (role := role_of(target)) is not None:
            by_role.setdefault(role, []).append(target)
    if "posts" in by_role:
        by_role.pop("relay", None)
    elif "relay" in by_role:
        return await _relay(door, incoming, by_role["relay"])
    return combine(
        [
            await handle(door, incoming, by_role[role])
            for role, handle in HANDLERS.items()
            if role in by_role
        ]
    )
