"""Mail to LIST-fbl@ and LIST-bounces@: a complaint (ARF) unsubscribes the complainer
(`complaints`); anything else at -bounces is a bounce (`bounces`). Nothing here is ever
answered or posted: the outcome is always DROPPED, a 250 that tells the sender nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from listserv.core.addresses import Route
from listserv.core.replies import Outcome
from listserv.inbound import bounces, complaints
from listserv.inbound.incoming import Door, Incoming, receiver_log


def _read(door: Door, incoming: Incoming, routes: Sequence[Route]) -> None:
    now = door.clock()
    removed = complaints.unsubscribe(door.db, door.config, incoming, routes, now)
    if removed is not None:
        receiver_log.info("feedback report from=%s: unsubscribed %s", incoming.mail_from,
                          "; ".join(removed) or "nobody")
        return
    at_bounces = [r for r in routes if r.role == "bounces"]
    if at_bounces:
        found = bounces.record(door.db, door.config, door.templates, incoming, at_bounces, now)
        receiver_log.info("bounce from=%s to=%s: %d recorded (%s)", incoming.mail_from,
                          incoming.to, found.recorded, found.detail)


async def receive(door: Door, incoming: Incoming, routes: Sequence[Route]) -> Outcome:
    """Read a report in one worker thread; each of its writes is one transaction."""
    await asyncio.to_thread(_read, door, incoming, routes)
    return Outcome.DROPPED
