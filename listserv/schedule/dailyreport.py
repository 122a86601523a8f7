"""The owners' daily report by email: yesterday's figures of `listserv report`, once a day.

At a list's digest hour (in its time zone) the scheduler reports the local day before to
each owner of the list. The report row of (list, day) is inserted in the transaction that
queues the emails, under a unique constraint: any number of schedulers may try, one insert
wins and sends, the others roll back. Lists without owners are skipped; a quiet day gets
its row but no email. Only the latest day is reported: a day missed while no scheduler ran
is in `listserv report`, not in a late email.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from jinja2 import Environment
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.admin import reports
from listserv.config import Config
from listserv.core import stats
from listserv.outbound.notifier import Notifier
from listserv.store import roles as listroles
from listserv.store.database import Database
from listserv.store.models import ListRole, MailingList, OwnerReport

log = logging.getLogger(__name__)

TEMPLATE = "owner_report.txt"


@dataclass(frozen=True)
class Reported:
    """One list's report of one day, and how many owners it was queued for (0: quiet)."""

    list_address: str
    day: date
    owners: int


def day_label(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def open_report(session: Session, config: Config, templates: Environment, ml: MailingList,
                day: date, now: datetime) -> Reported:
    """Insert the report row of `day` and queue one email per owner.

    Raises IntegrityError (from the flush) when that report exists already; the caller's
    transaction must then be rolled back.
    """
    row = OwnerReport(list_id=ml.id, day=day, owners=0, created_at=now)
    session.add(row)
    session.flush()
    report = reports.day_report(session, ml, day)
    if report.quiet:
        return Reported(ml.address, day, 0)
    owners = listroles.owners(session, ml)
    notifier = Notifier(session, config, templates, ml, now)
    for owner in owners:
        notifier.send(reports.REPORT_KIND, TEMPLATE, owner, report=report, day=day_label(day),
                      timezone=ml.timezone)
    row.owners = len(owners)
    return Reported(ml.address, day, len(owners))


def _due(session: Session, now: datetime) -> list[tuple[int, date]]:
    """(list id, day) of the reports due at `now` and not yet made, for lists with owners."""
    owned = select(ListRole.list_id).where(ListRole.role == "owner")
    due = [(ml.id, stats.report_day(now, ml.digest_hour, ml.timezone))
           for ml in session.scalars(select(MailingList).where(MailingList.id.in_(owned))
                                     .order_by(MailingList.id))]
    if not due:
        return []
    done = {(list_id, day) for list_id, day in session.execute(
        select(OwnerReport.list_id, OwnerReport.day)
        .where(tuple_(OwnerReport.list_id, OwnerReport.day).in_(due)))}
    return [pair for pair in due if pair not in done]


def schedule(db: Database, config: Config, templates: Environment,
             now: datetime) -> list[Reported]:
    """Make every due report; safe to run in many processes at once."""
    with db.session() as session:
        due = _due(session, now)
    made = []
    for list_id, day in due:
        try:
            with db.session() as session:
                ml = session.get(MailingList, list_id)
                if ml is not None:
                    made.append(open_report(session, config, templates, ml, day, now))
        except IntegrityError:
            log.info("owners' report %s of list %d already made elsewhere", day, list_id)
    return made
