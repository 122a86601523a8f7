"""Personal unsubscribe addresses: each member's copy of a post names its own leave token."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import tokens
from .addresses import role_address, tagged
from .config import Config
from .models import MailingList, Member
from .settings import token_secret


def personal_leave_address(secret: bytes, list_addr: str, member_id: int, address: str,
                           now: datetime) -> str:
    """A member's own leave address: acting on it needs no further confirmation."""
    token = tokens.issue(secret, "u", member_id, f"{list_addr} {address}", now, None)
    return tagged(role_address(list_addr, "leave"), token)


def personalize(session: Session, config: Config, member_id: int, message: bytes,
                now: datetime) -> bytes:
    """A post as one member receives it: List-Unsubscribe carries their personal token,
    so one click in their mail program removes them (RFC 2369)."""
    row = session.execute(
        select(MailingList.address, Member.address)
        .join(Member, Member.list_id == MailingList.id)
        .where(Member.id == member_id)
    ).first()
    if row is None:  # left since the delivery was queued: the generic address still works
        return message
    list_addr, address = row
    generic = re.compile(rb"List-Unsubscribe:\s*<mailto:"
                         + re.escape(role_address(list_addr, "leave").encode()) + rb">\r\n")
    personal = personal_leave_address(token_secret(session, config), list_addr, member_id,
                                      address, now)
    header = f"List-Unsubscribe: <mailto:{personal}>\r\n".encode()
    return generic.sub(lambda _: header, message, count=1)
