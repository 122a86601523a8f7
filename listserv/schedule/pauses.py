"""The end of a member's pause: mail again, and one reminder email that day.

The scheduler clears `Member.paused_until` and queues the reminder in one transaction,
with an UPDATE that only one process can win for a member (the row still paused), so the
reminder goes out once however many schedulers run.
"""

from __future__ import annotations

import logging
from datetime import datetime

from jinja2 import Environment
from sqlalchemy import select, update

from listserv.config import Config
from listserv.outbound.notifier import Notifier
from listserv.store.database import Database
from listserv.store.models import MailingList, Member

log = logging.getLogger(__name__)


def end_pauses(db: Database, config: Config, templates: Environment, now: datetime) -> int:
    """Remind every member whose pause ended by `now`; how many were reminded."""
    with db.read() as session:
        due = session.scalars(select(Member.id).where(Member.paused_until <= now)).all()
    reminded = 0
    for member_id in due:
        with db.session() as session:
            won = session.execute(
                update(Member)
                .where(Member.id == member_id, Member.paused_until <= now)
                .values(paused_until=None)
            ).rowcount
            if not won:
                continue  # another scheduler reminded this member
            member = session.get_one(Member, member_id)
            ml = session.get_one(MailingList, member.list_id)
            Notifier(session, config, templates, ml, now).send(
                "pause", "pause_over.txt", member.address, address=member.address
            )
            reminded += 1
    return reminded
