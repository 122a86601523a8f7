"""Bounces into member scores: from the relay's 5xx while sending, from mail to a VERP
address, and from DSNs at the plain -bounces address (parsed by `bounces.parse_bounce`).

At the threshold a member's delivery is disabled, the member is told once and the owners
are notified. Bounces of a disabled member are recorded but never counted, so the notice
telling them (which may well bounce too) cannot count against them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from jinja2 import Environment
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import notices, verp
from listserv.core.addresses import Route, role_address, tagged
from listserv.core.bounce_score import (
    BounceScore,
    add_bounce,
    is_policy_rejection,
    should_disable,
)
from listserv.core.bounces import BounceReport, parse_bounce
from listserv.core.message import Malformed
from listserv.inbound.incoming import Incoming
from listserv.outbound.notifier import queue_notice
from listserv.store import roles as listroles
from listserv.store.database import Database, get_list
from listserv.store.models import Bounce, MailingList, Member
from listserv.store.settings import token_secret

log = logging.getLogger(__name__)

def find_member(session: Session, ml: MailingList, address: str) -> Member | None:
    """The member with that address; bounces may change the case of the local part."""
    return session.scalar(
        select(Member).where(Member.list_id == ml.id,
                             func.lower(Member.address) == address.lower())
    )


def register(
    session: Session, ml: MailingList, member: Member | None, address: str, *,
    permanent: bool, status: str | None, source: str, detail: str, now: datetime,
    config: Config, templates: Environment,
) -> Bounce:
    """Record one bounce and update the member's score, disabling delivery at the threshold."""
    counted = (member is not None and member.disabled_at is None
               and not is_policy_rejection(status))
    bounce = Bounce(list_id=ml.id, member_id=member.id if member else None, address=address,
                    permanent=permanent, status=status, source=source, counted=counted,
                    detail=detail[:1000], received_at=now)
    session.add(bounce)
    if member is None or not counted:
        return bounce
    score = add_bounce(BounceScore(member.bounce_score, member.last_bounce_on),
                       permanent=permanent, today=now.date(), decay_days=config.bounces.decay_days)
    member.bounce_score, member.last_bounce_on = score.score, score.last_bounce
    if should_disable(score, config.bounces.threshold):
        disable(session, ml, member, detail, now, config, templates)
    return bounce


def disable(
    session: Session, ml: MailingList, member: Member, detail: str, now: datetime,
    config: Config, templates: Environment,
) -> None:
    """Stop delivery to a member, tell them once and notify the owners."""
    member.disabled_at = now
    log.warning("delivery to %s on %s disabled (bounce score %.1f)", member.address,
                ml.address, member.bounce_score)
    values = {
        "title": ml.title, "list_address": ml.address, "address": member.address,
        "request_address": role_address(ml.address, "request"), "score": member.bounce_score,
        "threshold": config.bounces.threshold, "detail": detail,
    }
    sender = role_address(ml.address, "bounces")
    letters = [("bounce_disabled", "bounce_disabled.txt", member.address)]
    letters += [("bounce_owner", "bounce_owner.txt", owner)
                for owner in listroles.owners_and_site(session, ml, config)]
    for kind, template, recipient in letters:
        notice = notices.compose(
            rendered=templates.get_template(template).render(**values),
            template_name=template, from_name=ml.title,
            from_address=role_address(ml.address, "owner"), envelope_sender=sender,
            recipient=recipient, list_id=ml.list_id, loop_value=ml.address,
            message_id=f"{uuid.uuid4().hex}@{ml.domain}", now=now, auto="auto-generated",
        )
        queue_notice(session, kind=kind, sender=notice.sender, recipient=recipient,
                            payload=notice.payload, now=now, list_id=ml.id)


def enable(member: Member) -> None:
    """Resume delivery with a clean score."""
    member.disabled_at = None
    member.bounce_score = 0.0
    member.last_bounce_on = None


@dataclass(frozen=True)
class Received:
    recorded: int
    detail: str


def _summary(report: BounceReport | None) -> str:
    if report is None:
        return "not a delivery report"
    return "; ".join(f"{r.address} {r.status or ('permanent' if r.permanent else 'temporary')}"
                     for r in report.recipients) or "report names no recipient"


def record(
    db: Database, config: Config, templates: Environment, incoming: Incoming,
    routes: Sequence[Route], now: datetime,
) -> Received:
    """Record what mail to -bounces addresses tells us, in one transaction.

    Only a delivery report counts (`parse_bounce`), and only for a member it is proven to
    be about: at a VERP address whose HMAC we made, a report that names the member or
    carries that address (a returned copy's Return-Path); at the plain address, a report
    whose returned copy carries the member's VERP address. Anyone can write a report
    naming bob@example.net; only bob's provider has seen his copy's envelope sender.
    Everything else is dropped and logged. Nothing that arrives here is ever posted.
    """
    if isinstance(incoming.parsed, Malformed):
        return Received(0, "malformed, ignored")
    report = parse_bounce(incoming.tree, incoming.mail_from)
    summary = _summary(report)
    if report is None:
        return Received(0, summary)
    lowered = incoming.raw.lower()
    recorded = 0
    with db.session() as session:
        secret = token_secret(session, config)
        for target in routes:
            ml = get_list(session, target.list_address or "")
            if ml is None:
                continue
            sender = role_address(ml.address, "bounces")
            if target.detail is None:
                recorded += _plain(session, ml, report, lowered, secret, summary, now, config,
                                   templates)
                continue
            member_address = verp.decode(sender, target.detail, secret)
            if member_address is None:
                log.warning("report at %s dropped: not a VERP address we signed",
                            tagged(sender, target.detail))
                continue
            named = [r for r in report.recipients if r.address.lower() == member_address.lower()]
            if not named and target.detail.encode() not in lowered:
                log.warning("report at %s dropped: it names %s, not the member",
                            tagged(sender, target.detail),
                            ",".join(r.address for r in report.recipients) or "nobody")
                continue
            found = named or list(report.recipients)
            statuses = [r.status for r in found if r.status]
            register(session, ml, find_member(session, ml, member_address), member_address,
                     permanent=not found or any(r.permanent for r in found),
                     status=statuses[0] if statuses else None, source="verp",
                     detail=summary, now=now, config=config, templates=templates)
            recorded += 1
    return Received(recorded, summary)


def _plain(
    session: Session, ml: MailingList, report: BounceReport, lowered: bytes, secret: bytes,
    summary: str, now: datetime, config: Config, templates: Environment,
) -> int:
    """Count a report at the plain -bounces address for each member it names whose VERP
    address it also carries; how many were counted."""
    sender = role_address(ml.address, "bounces")
    recorded = 0
    for rcpt in report.recipients:
        member = find_member(session, ml, rcpt.address)
        if member is None:
            continue
        if verp.encode(sender, member.address, secret).lower().encode() not in lowered:
            log.warning("report at %s about member %s dropped: it carries no copy we sent",
                        sender, member.address)
            continue
        register(session, ml, member, rcpt.address, permanent=rcpt.permanent,
                 status=rcpt.status, source="dsn", detail=summary, now=now, config=config,
                 templates=templates)
        recorded += 1
    return recorded
