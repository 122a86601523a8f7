"""Complaints arriving at LIST-fbl@ (or the bounce address): the complainer leaves the list.

A member who marks list mail as spam must get no more of it: every further message
hurts the list's reputation with their provider. But a report is only believed when it
carries what we signed into one member's copy (their unsubscribe token, or their signed
VERP address), and one report ends at most one membership: otherwise one forged email
could empty a list. The member is not told (providers expect silence); the MemberEvent
row tells the owners in their daily report and `listserv report`. A report we cannot tie
to one copy is logged and counted there too, and removes no one. Everything happens in
one transaction, before the 250.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import verp
from listserv.core.addresses import Route, role_address
from listserv.core.complaints import Complaint, parse_arf
from listserv.core.message import Malformed
from listserv.inbound.bounces import find_member
from listserv.inbound.incoming import Incoming
from listserv.store.database import Database, get_list
from listserv.store.models import MailingList, Member, MemberEvent
from listserv.store.settings import token_secret
from listserv.web import oneclick

log = logging.getLogger(__name__)

# The MemberEvent kind of a complaint that named no copy we sent: counted, nobody removed.
UNATTRIBUTED = "complaint-none"


def _complainers(session: Session, complaint: Complaint, now: datetime,
                 secret: bytes) -> dict[int, Member]:
    """The members whose own copy the report proves it is about."""
    found: dict[int, Member] = {}
    for token in complaint.tokens:
        target = oneclick.resolve(session, token, now, secret)
        if target is not None and target.member is not None:
            found[target.member.id] = target.member
    for list_address, detail in complaint.verp:
        ml = get_list(session, list_address)
        if ml is None:
            continue
        address = verp.decode(role_address(ml.address, "bounces"), detail, secret)
        member = find_member(session, ml, address) if address else None
        if member is not None:
            found[member.id] = member
    return found


def unsubscribe(db: Database, config: Config, incoming: Incoming, routes: Sequence[Route],
                now: datetime) -> list[str] | None:
    """Unsubscribe the one member a feedback report proves complained; None when the
    message is no such report. Returns the address removed ("list member") for the log."""
    if isinstance(incoming.parsed, Malformed):
        return None
    complaint = parse_arf(incoming.tree)
    if complaint is None:
        return None
    if not complaint.is_spam_complaint:
        log.info("feedback report of type %r ignored", complaint.feedback_type)
        return []
    with db.session() as session:
        members = list(_complainers(session, complaint, now,
                                    token_secret(session, config)).values())
        if len(members) == 1:
            (member,) = members
            ml = session.get_one(MailingList, member.list_id)
            oneclick.remove(session, member, "complaint", now)
            return [f"{ml.address} {member.address}"]
        log.warning("spam complaint not tied to one copy we sent (%d members proven; claimed "
                    "recipients=%s, lists=%s): nobody removed", len(members),
                    ",".join(complaint.recipients), ",".join(complaint.list_ids))
        for list_id in {ml.id for r in routes if (ml := get_list(session, r.list_address or ""))}:
            session.add(MemberEvent(list_id=list_id, member_id=0, address="",
                                    kind=UNATTRIBUTED, at=now))
    return []
