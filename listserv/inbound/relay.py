"""Private replies through author aliases: mail to `LIST+aXXXX@` reaches that author.

Only members of the list may write to its members' aliases, so an alias cannot be used to
spam members. Mail from anyone else is dropped after DATA with the very answer a member's
mail gets: a different answer, at RCPT or after DATA, would tell anyone who asks whether
an address is on the list. The relayed message comes From the writer's own
alias, so the answer comes back the same way and neither address is ever exposed; it is
queued like a notice, in the same transaction as the checks, before the 250.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import aliases, compose
from listserv.core.addresses import Route, role_address, try_normalize
from listserv.core.message import Malformed
from listserv.core.replies import Outcome, combine
from listserv.inbound.incoming import Authenticity, Door, Incoming, receiver_log
from listserv.outbound.finishing import RELAYED
from listserv.outbound.notifier import queue_notice
from listserv.store.database import Database, get_list
from listserv.store.models import MailingList, Member
from listserv.store.settings import token_secret

log = logging.getLogger(__name__)


def _target(session: Session, config: Config, route: Route) -> tuple[MailingList, dict[str, Member],
                                                     bytes, str] | None:
    """(list, its members by address, secret, the author the alias stands for) or None."""
    ml = get_list(session, route.list_address or "")
    if ml is None:
        return None
    members = {m.address: m for m in session.scalars(select(Member).where(
        Member.list_id == ml.id))}
    secret = token_secret(session, config)
    author = aliases.owner_of(secret, ml.address, route.detail or "", members)
    return (ml, members, secret, author) if author else None


def check_rcpt(db: Database, config: Config, route: Route) -> Outcome:
    """At RCPT time only whether the alias exists (its owner is a member); who writes is
    looked at after DATA, where the answer does not depend on it."""
    with db.session() as session:
        found = _target(session, config, route)
    return Outcome.UNKNOWN_RECIPIENT if found is None else Outcome.RECIPIENT_OK


def _relay_one(session: Session, route: Route, incoming: Incoming,
               config: Config, now: datetime, authenticity: Authenticity) -> Outcome:
    found = _target(session, config, route)
    if found is None:
        return Outcome.UNKNOWN_RECIPIENT
    ml, members, secret, author = found
    parsed = incoming.parsed
    if isinstance(parsed, Malformed):
        return Outcome.MALFORMED
    # Robots first: a robot's answer must not depend on who writes, or marking a probe as
    # automatic would tell members (dropped) from strangers (refused).
    robot = incoming.robot(ml.address)
    if robot:
        log.info("alias mail to %s dropped: automatic message (%s)", route.detail, robot)
        return Outcome.DROPPED
    writer, sender = parsed.author_address, incoming.sender
    if writer is None or writer not in members or try_normalize(sender) not in members:
        log.info("alias mail to %s dropped: %s or %s is not a member", route.detail, writer,
                 sender)
        return Outcome.ALIAS_REFUSED
    # A member's From that their domain's DMARC says is forged is not relayed in their name
    # (posts to the list are held for the same reason); the answer is a member's.
    if forged := authenticity.forged(parsed):
        log.info("alias mail to %s dropped: %s", route.detail, forged)
        return Outcome.ALIAS_REFUSED
    shown = members[writer].display_name or parsed.author_name or "A member"
    payload = compose.render_relay(
        incoming.raw, from_name=f"{shown} via {ml.title}",
        from_address=aliases.alias_address(secret, ml.address, writer),
    )
    queue_notice(session, kind=RELAYED, sender=role_address(ml.address, "bounces"),
                 recipient=author, payload=payload, now=now, list_id=ml.id)
    return Outcome.ACCEPTED


def _relay(db: Database, config: Config, incoming: Incoming, routes: Sequence[Route],
           now: datetime, authenticity: Authenticity) -> Outcome:
    with db.session() as session:
        return combine([_relay_one(session, r, incoming, config, now, authenticity)
                        for r in routes])


async def receive(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """Relay one message to the authors behind its alias recipients, all or nothing."""
    outcome = await asyncio.to_thread(_relay, door.db, door.config, incoming, routes,
                                      door.clock(), door.authenticity())
    receiver_log.info("alias mail from=%s to=%s: %s", incoming.mail_from, incoming.to,
                      outcome.value)
    return outcome
