"""Mail to postmaster@ (RFC 5321 section 4.5.1): every domain we receive for accepts it, and
the people who run the site read it.

It goes to `[bounces] owners`, the addresses told about the whole site's delivery trouble;
when that is empty, to the owners of every list on the domain, so postmaster mail always
reaches someone who can act. It is forwarded like mail to `LIST-owner@`: From the
postmaster address, the writer in Reply-To, so it passes DMARC at the owners' provider.
Automatic mail (bounces, abuse reports) is forwarded too: that is what postmaster is for.
Only our own forward coming back (its X-Loop) is dropped, and the forward goes out with an
empty envelope sender, so a forward that fails never bounces back into postmaster@.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import compose
from listserv.core.addresses import POSTMASTER, Route, try_normalize
from listserv.core.message import Malformed
from listserv.core.replies import Outcome
from listserv.inbound.incoming import Door, Incoming, receiver_log
from listserv.outbound.notifier import queue_notice
from listserv.store import roles
from listserv.store.database import Database

log = logging.getLogger(__name__)

NOTICE_KIND = "postmaster"


def recipients(session: Session, config: Config, domain: str) -> list[str]:
    """Who reads a domain's postmaster mail: `[bounces] owners`, else its lists' owners."""
    return roles.site_owners(config) or roles.domain_owners(session, domain)


def _forward(db: Database, config: Config, domains: list[str], incoming: Incoming,
             now: datetime) -> Outcome:
    """Queue one forward per domain and reader, committed before the receiver answers."""
    parsed = incoming.parsed
    if isinstance(parsed, Malformed):
        return Outcome.MALFORMED
    loops = {
        value.strip().strip("<>").lower()
        for name, value in parsed.headers
        if name.lower() == "x-loop"
    }
    author = parsed.author_address or try_normalize(incoming.sender) or "MAILER-DAEMON"
    name = parsed.author_name if parsed.author_address else ""
    with db.session() as session:
        for domain in dict.fromkeys(domains):
            address = f"{POSTMASTER}@{domain}"
            if address in loops:
                log.info("mail to %s dropped: our own forward came back", address)
                continue
            readers = recipients(session, config, domain)
            if not readers:
                log.warning(
                    "mail to %s dropped: no [bounces] owners and no list owners on %s",
                    address,
                    domain,
                )
                continue
            payload = compose.render_forward(incoming.raw, name, author, address, address,
                                             address)
            for reader in readers:
                queue_notice(
                    session, kind=NOTICE_KIND, sender="", recipient=reader, payload=payload, now=now
                )
    return Outcome.ACCEPTED


async def receive(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """Forward mail to postmaster@ each domain it was sent to (the route's detail)."""
    domains = [r.detail or door.config.lists.domain.lower() for r in routes]
    outcome = await asyncio.to_thread(_forward, door.db, door.config, domains, incoming,
                                      door.clock())
    receiver_log.info("postmaster mail from=%s: %s", incoming.mail_from, outcome.value)
    door.on_post()
    return outcome
