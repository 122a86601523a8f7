"""The hold queue: notices when a message is held, and approve, reject, discard or expire.

A moderator decides by replying to the notice (its Reply-To carries a single-use token for
that message) or from the CLI. Approving stores and delivers the message exactly like a
post. Every decision and the notices it causes commit in one transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from listserv.admin.lists import AdminError
from listserv.config import Config
from listserv.core import commands, dmarc, tokens
from listserv.core.addresses import Route, identity, role_address, tagged, try_normalize
from listserv.core.message import Malformed, Parsed, parse
from listserv.outbound.notifier import Notifier
from listserv.store.database import Database
from listserv.store.models import Held, ListRole, MailingList, Member, Pending, Post, UsedToken
from listserv.store.posts import ListRow, store_post
from listserv.store.settings import token_secret

if TYPE_CHECKING:
    from listserv.inbound.desk import Incoming, ListDesk

log = logging.getLogger(__name__)

EXCERPT_LINES = 20


class ModerationError(AdminError):
    """A moderation request that cannot be done; the message says why."""


def moderators(session: Session, ml: MailingList) -> list[str]:
    """Moderators, or the owners when a list has none."""
    rows = session.execute(
        select(ListRole.role, ListRole.address)
        .where(ListRole.list_id == ml.id, ListRole.role.in_(("moderator", "owner")))
        .order_by(ListRole.address)
    ).all()
    chosen = [a for r, a in rows if r == "moderator"] or [a for r, a in rows if r == "owner"]
    return list(dict.fromkeys(chosen))


def moderation_binding(ml: MailingList, held: Held) -> str:
    """A moderation token names the message, not only its row (row ids can be reused)."""
    return f"{ml.address} held {held.id} {held.message_id}"


def moderation_address(session: Session, config: Config, ml: MailingList, held: Held,
                       now: datetime) -> str:
    valid = timedelta(days=config.moderation.held_max_days + 1)
    token = tokens.issue(token_secret(session, config), "m", held.id,
                         moderation_binding(ml, held), now, valid)
    return tagged(role_address(ml.address, "confirm"), token)


def excerpt(text: str) -> str:
    lines = text.strip().splitlines()
    shown = "\n".join(f"  | {line}" for line in lines[:EXCERPT_LINES])
    return shown + ("\n  | ..." if len(lines) > EXCERPT_LINES else "")


def may_tell_poster(session: Session, config: Config, ml: MailingList, parsed: Parsed,
                    poster: str) -> bool:
    """No backscatter: tell only a member, an earlier poster to this list, or a sender our
    front MTA's Authentication-Results vouch for (DMARC or aligned SPF/DKIM pass); spam
    with a forged sender must not make us mail an innocent address."""
    known = session.scalar(select(Member.id).where(
        Member.list_id == ml.id, func.lower(Member.address) == identity(poster)).limit(1))
    known = known or session.scalar(select(Post.id).where(
        Post.list_id == ml.id, func.lower(Post.author_address) == identity(poster)).limit(1))
    if known:
        return True
    results = [v for k, v in parsed.headers if k.lower() == "authentication-results"]
    return dmarc.sender_verified(results, config.dkim.arc_authserv_id or config.lists.domain,
                                 poster)


def on_held(session: Session, config: Config, templates: Environment, ml: MailingList,
            held: Held, parsed: Parsed, envelope_sender: str, now: datetime) -> None:
    """Tell the poster once that the message waits, and the moderators what to decide."""
    notifier = Notifier(session, config, templates, ml, now)
    poster = try_normalize(envelope_sender)
    if poster and not may_tell_poster(session, config, ml, parsed, poster):
        log.info("%s: message %s held; %s not told (unverified sender, not known here)",
                 ml.address, held.id, poster)
    elif poster:
        notifier.send("held", "held_poster.txt", poster,
                      in_reply_to=parsed.message_id, subject=held.subject, reason=held.reason)
    address = moderation_address(session, config, ml, held, now)
    people = moderators(session, ml)
    if not people:
        log.warning("%s: message %s held but the list has no moderator or owner",
                    ml.address, held.id)
    for moderator in people:
        notifier.send(
            "moderator", "moderator_notice.txt", moderator, reply_to=address,
            subject=held.subject, reason=held.reason, sender=held.sender, held_id=held.id,
            received_at=held.received_at.strftime("%Y-%m-%d %H:%M UTC"),
            excerpt=excerpt(parsed.text), moderation_address=address,
        )


# -- decisions ---------------------------------------------------------------------------------
def approve(session: Session, config: Config, ml: MailingList, held: Held,
            now: datetime) -> Post | None:
    """Store and deliver the held message like any post (None if it was posted meanwhile)."""
    parsed = parse(held.raw, config.limits)
    if isinstance(parsed, Malformed):
        raise ModerationError(f"held message {held.id} cannot be parsed: {parsed.reason}")
    session.delete(held)
    session.flush()
    if session.scalar(select(Post.id).where(Post.list_id == ml.id,
                                            Post.message_id == parsed.message_id)):
        return None
    route = Route("list", ml.address, "post", None)
    row = ListRow(ml.id, ml.address, ml.subject_prefix)
    return session.get_one(Post, store_post(session.connection(), row, parsed, held.raw,
                                            route, now))


def trust(session: Session, held: Held) -> bool:
    """End the probation of a held message's author (False: not a member of its list)."""
    member = session.scalar(select(Member).where(
        Member.list_id == held.list_id, func.lower(Member.address) == identity(held.sender)))
    if member is None:
        return False
    member.trusted = True
    return True


def poster_to_tell(session: Session, config: Config, ml: MailingList, held: Held) -> str | None:
    """Who hears what became of a held message: its envelope sender, when `may_tell_poster`
    says so (held spam names a forged sender, who must not get our rejections either)."""
    poster = try_normalize(held.envelope_sender or held.sender)
    parsed = parse(held.raw, config.limits)
    if poster is None or isinstance(parsed, Malformed) or \
            not may_tell_poster(session, config, ml, parsed, poster):
        log.info("%s: held message %s handled; its sender not told (unverified, not known"
                 " here)", ml.address, held.id)
        return None
    return poster


def reject(notifier: Notifier, held: Held, reason: str) -> None:
    poster = poster_to_tell(notifier.session, notifier.config, notifier.ml, held)
    if poster is not None:
        notifier.send("rejected", "rejected.txt", poster, in_reply_to=held.message_id,
                      subject=held.subject, reason=reason)
    notifier.session.delete(held)


def decide(session: Session, config: Config, templates: Environment, held: Held, verb: str,
           reason: str, now: datetime) -> str:
    """Apply a moderator's decision; returns what was done, in words."""
    ml = session.get_one(MailingList, held.list_id)
    if verb == "approve":
        post = approve(session, config, ml, held, now)
        return f"approved held message {held.id}" + ("" if post else " (already posted)")
    if verb == "reject":
        reject(Notifier(session, config, templates, ml, now), held, reason)
        return f"rejected held message {held.id}"
    session.delete(held)
    return f"discarded held message {held.id}"


def moderate_by_token(desk: ListDesk, text: str, peeked: tokens.Token, msg: Incoming) -> None:
    """A moderator's reply to a notice: verify the token, read the verb, decide once."""
    held = desk.session.get(Held, peeked.ident)
    if held is None or held.list_id != desk.ml.id:
        raise tokens.TokenError("this held message was already handled")
    token = tokens.verify(desk.secret, text, moderation_binding(desk.ml, held), desk.now)
    verb = commands.parse_moderation(msg.parsed.subject, msg.parsed.text)
    if verb is None:
        desk.notifier.send(
            "moderation", "moderation_result.txt", msg.sender, in_reply_to=msg.message_id,
            subject=held.subject,
            answer="Nothing done: start your reply with approve, reject REASON or discard.",
        )
        return
    desk.use(token)
    done = decide(desk.session, desk.config, desk.notifier.templates, held, verb.verb,
                  verb.reason, desk.now)
    log.info("%s by %s: %s", desk.ml.address, msg.sender, done)


# -- the CLI and the scheduler -----------------------------------------------------------------
def held_row(held: Held) -> dict[str, Any]:
    return {
        "id": held.id,
        "sender": held.sender,
        "envelope_sender": held.envelope_sender,
        "subject": held.subject,
        "reason": held.reason,
        "received_at": held.received_at.isoformat(),
        "message_id": held.message_id,
    }


def held_messages(session: Session, ml: MailingList) -> list[Held]:
    return list(session.scalars(select(Held).where(Held.list_id == ml.id).order_by(Held.id)))


def require_held(session: Session, held_id: int) -> Held:
    held = session.get(Held, held_id)
    if held is None:
        raise ModerationError(f"no held message with id {held_id}")
    return held


def expire(db: Database, config: Config, templates: Environment, now: datetime) -> int:
    """Discard held messages older than the configured age, telling each poster we may tell
    (`poster_to_tell`); also drop confirmations and used-token records nobody can use any
    more. Returns how many held messages were discarded."""
    cutoff = now - timedelta(days=config.moderation.held_max_days)
    with db.session() as session:
        old = session.scalars(select(Held).where(Held.received_at < cutoff)).all()
        for held in old:
            ml = session.get_one(MailingList, held.list_id)
            poster = poster_to_tell(session, config, ml, held)
            if poster is not None:
                Notifier(session, config, templates, ml, now).send(
                    "expired", "held_expired.txt", poster, in_reply_to=held.message_id,
                    subject=held.subject)
            session.delete(held)
        session.execute(delete(Pending).where(
            Pending.created_at < now - timedelta(days=config.security.confirm_days + 1)))
        # Every single-use token expires; once it has, its record is no longer needed.
        longest = max(config.security.confirm_days, config.moderation.held_max_days + 1)
        session.execute(delete(UsedToken).where(
            UsedToken.used_at < now - timedelta(days=longest + 1)))
    if old:
        log.info("discarded %d held messages older than %s days", len(old),
                 config.moderation.held_max_days)
    return len(old)


def held_text(held: Held, config: Config) -> str:
    parsed = parse(held.raw, config.limits)
    return parsed.reason if isinstance(parsed, Malformed) else parsed.text
