"""Complaints arriving at LIST-fbl@ (or the bounce address): the complainer leaves the list.

A member who marks list mail as spam must get no more of it: every further message
hurts the list's reputation with their provider. The MemberEvent row tells the owners
in `listserv report`. Everything happens in one transaction, before the 250.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .addresses import Route
from .complaints import Complaint, parse_arf
from .config import Config
from .db import Database, get_list
from .models import MailingList, Member
from .settings import token_secret
from .web import oneclick

log = logging.getLogger("listserv.feedback")


def _complainers(session: Session, routes: Sequence[Route], complaint: Complaint,
                 now: datetime, secret: bytes) -> list[Member]:
    found: dict[int, Member] = {}
    for token in complaint.tokens:
        target = oneclick.resolve(session, token, now, secret)
        if target is not None and target.member is not None:
            found[target.member.id] = target.member
    for route in routes:
        ml = get_list(session, route.list_address or "")
        # The bare Original-Rcpt-To is believed only for a report about this list's mail.
        if ml is None or ml.list_id not in complaint.list_ids or not complaint.recipients:
            continue
        for member in session.scalars(select(Member).where(
                Member.list_id == ml.id, Member.address.in_(complaint.recipients))):
            found[member.id] = member
    return list(found.values())


def receive(db: Database, routes: Sequence[Route], raw: bytes, config: Config,
            now: datetime) -> list[str] | None:
    """Unsubscribe whoever a feedback report names; None when `raw` is no such report.
    Returns the addresses removed ("list member") for the log."""
    complaint = parse_arf(raw, config.limits)
    if complaint is None:
        return None
    if not complaint.is_spam_complaint:
        log.info("feedback report of type %r ignored", complaint.feedback_type)
        return []
    with db.session() as session:
        members = _complainers(session, routes, complaint, now,
                               token_secret(session, config))
        removed = []
        for member in members:
            ml = session.get(MailingList, member.list_id)
            removed.append(f"{ml.address if ml else member.list_id} {member.address}")
            oneclick.remove(session, member, "complaint", now)
    if not removed:
        log.warning("spam complaint names no member we can identify (recipients=%s, "
                    "lists=%s)", ",".join(complaint.recipients), ",".join(complaint.list_ids))
    return removed
