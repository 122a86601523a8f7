"""Signing in by email: a single-use link mailed to members, then a signed session cookie.

A sign-in link is a `s` token (tokens.py) naming the SignInRequest row it was asked with,
bound to the address, valid an hour, spent on use. Every request is recorded, member or
not, and answered alike, so the page reveals nobody's membership; the rows of the last hour
limit the links mailed per address and per client. The session cookie names a WebSession
row and carries an HMAC of it, so it cannot be made up, and signing out deletes the row.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from jinja2 import Environment
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import notices, tokens
from listserv.core.addresses import list_id, role_address, try_normalize
from listserv.outbound.notifier import queue_notice
from listserv.store.models import (
    ListRole,
    MailingList,
    Member,
    SignInRequest,
    UsedToken,
    WebSession,
)

LINK_VALID = timedelta(hours=1)
SESSION_DAYS = 30
# Links mailed in an hour: per address (a typo or a forgotten mail), per client address.
PER_ADDRESS = 3
PER_CLIENT = 10
COOKIE = "listserv_session"
MAX_ID = 2**31 - 1  # an INTEGER key; a bigger number in a forged link or cookie names nothing
CSRF_COOKIE = "listserv_csrf"


def _binding(address: str) -> str:
    return f"sign-in {address}"


def _known(session: Session, address: str) -> MailingList | None:
    """A list this address belongs to (as member, owner or moderator), if any."""
    list_ids = (
        select(Member.list_id)
        .where(Member.address == address)
        .union(
            select(ListRole.list_id).where(
                ListRole.address == address, ListRole.role.in_(("owner", "moderator"))
            )
        )
    )
    return session.scalar(
        select(MailingList).where(MailingList.id.in_(list_ids)).order_by(MailingList.id).limit(1)
    )


def request_link(
    session: Session,
    config: Config,
    templates: Environment,
    secret: bytes,
    typed: str,
    client: str,
    base_url: str,
    now: datetime,
) -> bool:
    """Mail a sign-in link if `typed` is a member's address and no limit is reached; whether
    one was queued (for the log only: the reader is told the same either way)."""
    address = try_normalize(typed)
    if address is None:
        return False
    row, over_limit = _record_request(session, address, client, now)
    ml = None if over_limit else _known(session, address)
    if ml is None:
        return False
    token = tokens.issue(secret, "s", row.id, _binding(address), now, LINK_VALID)
    rendered = templates.get_template("web/signin.txt").render(
        link=f"{base_url.rstrip('/')}/signin/{token}", title=ml.title
    )
    notice = notices.compose(
        rendered=rendered,
        template_name="web/signin.txt",
        from_name=ml.title,
        from_address=role_address(ml.address, "request"),
        envelope_sender=role_address(ml.address, "bounces"),
        recipient=address,
        list_id=list_id(ml.address),
        loop_value=ml.address,
        message_id=f"{uuid.uuid4().hex}@{ml.domain}",
        now=now,
        auto="auto-generated",
    )
    queue_notice(session, kind="signin", sender=notice.sender, recipient=address,
                 payload=notice.payload, now=now, list_id=ml.id)
    return True


def _record_request(
    session: Session, address: str, client: str, now: datetime
) -> tuple[SignInRequest, bool]:
    """The request's row (its id names the link), and whether the address or the client
    asked too often in the last hour. A request is kept only while its link is valid and it
    counts towards the limits, so neither strangers' typed addresses nor one client's flood
    stay in the database."""
    hour_ago = now - LINK_VALID
    session.execute(delete(SignInRequest).where(SignInRequest.at <= hour_ago))
    by_address, by_client = session.execute(
        select(
            func.count().filter(SignInRequest.address == address),
            func.count().filter(SignInRequest.client == client),
        ).where(
            SignInRequest.at > hour_ago,
            or_(SignInRequest.address == address, SignInRequest.client == client),
        )
    ).one()
    row = SignInRequest(address=address, client=client[:64], at=now)
    session.add(row)
    session.flush()
    return row, by_address >= PER_ADDRESS or by_client >= PER_CLIENT


def check_link(session: Session, secret: bytes, token: str, now: datetime) -> str | None:
    """The address a sign-in link is for, if it is ours, unexpired and unused."""
    peeked = tokens.peek(token)
    if peeked is None or peeked.kind != "s" or peeked.ident > MAX_ID:
        return None
    row = session.get(SignInRequest, peeked.ident)
    if row is None:
        return None
    try:
        valid = tokens.verify(secret, token, _binding(row.address), now)
    except tokens.TokenError:
        return None
    if session.get(UsedToken, valid.key) is not None:
        return None
    return row.address


@dataclass(frozen=True)
class Signed:
    cookie: str
    address: str


def sign_in(session: Session, secret: bytes, token: str, now: datetime) -> Signed | None:
    """Spend a sign-in link and open a session; None for a link we refuse."""
    address = check_link(session, secret, token, now)
    if address is None or _known(session, address) is None:
        return None
    peeked = tokens.peek(token)
    assert peeked is not None
    session.add(UsedToken(key=peeked.key, used_at=now))
    row = WebSession(address=address, created_at=now, expires_at=now + timedelta(days=SESSION_DAYS))
    session.add(row)
    session.flush()
    return Signed(f"{row.id}-{_mac(secret, row.id, address)}", address)


def _mac(secret: bytes, session_id: int, address: str) -> str:
    text = f"web-session\0{session_id}\0{address.lower()}".encode()
    return hmac.new(secret, text, hashlib.sha256).hexdigest()[:32]


def reader(
    session: Session, secret: bytes, cookie: str | None, now: datetime
) -> tuple[int, str] | None:
    """(session id, address) of a valid session cookie; None for anything else."""
    ident, _, mac = (cookie or "").partition("-")
    if not ident.isdigit() or len(ident) > 10 or int(ident) > MAX_ID:
        return None
    row = session.get(WebSession, int(ident))
    if row is None or row.expires_at <= now:
        return None
    if not hmac.compare_digest(_mac(secret, row.id, row.address), mac):
        return None
    return row.id, row.address


def sign_out(session: Session, session_id: int, now: datetime) -> None:
    """End this session, and sweep the expired ones."""
    session.execute(
        delete(WebSession).where(or_(WebSession.id == session_id, WebSession.expires_at <= now))
    )


def csrf_token(secret: bytes, browser: str) -> str:
    """The form token of a browser: an HMAC of its random CSRF cookie."""
    return hmac.new(secret, f"csrf\0{browser}".encode(), hashlib.sha256).hexdigest()[:32]


def csrf_ok(secret: bytes, browser: str | None, sent: object) -> bool:
    return (
        bool(browser)
        and isinstance(sent, str)
        and hmac.compare_digest(csrf_token(secret, browser or ""), sent)
    )
