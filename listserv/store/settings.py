"""Installation-wide values stored with the data: the token secret, whether sending is
paused."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.store.database import insert_ignore
from listserv.store.models import MailingList, Setting

SECRET_KEY = "token_secret"
PAUSED_KEY = "outbox_paused"  # present: every list's sending is paused


def token_secret(session: Session, config: Config) -> bytes:
    """The HMAC key: `[security] secret`, else the stored one, created on first use (racing
    creators agree: the first insert wins and everyone reads it back)."""
    if config.security.secret:
        return config.security.secret.encode()
    insert_ignore(session, Setting, [{"key": SECRET_KEY, "value": secrets.token_hex(32)}])
    value = session.scalar(select(Setting.value).where(Setting.key == SECRET_KEY))
    assert value is not None
    return bytes.fromhex(value)


def sending_paused(session: Session) -> tuple[bool, list[str]]:
    """(all sending paused, addresses of the lists whose sending is paused)."""
    everything = session.get(Setting, PAUSED_KEY) is not None
    lists = session.scalars(select(MailingList.address)
                            .where(MailingList.sending_paused.is_(True))
                            .order_by(MailingList.address)).all()
    return everything, list(lists)
