"""Installation-wide values stored with the data: the token secret."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.store.database import insert_ignore
from listserv.store.models import Setting

SECRET_KEY = "token_secret"


def token_secret(session: Session, config: Config) -> bytes:
    """The HMAC key: `[security] secret`, else the stored one, created on first use (racing
    creators agree: the first insert wins and everyone reads it back)."""
    if config.security.secret:
        return config.security.secret.encode()
    insert_ignore(session, Setting, [{"key": SECRET_KEY, "value": secrets.token_hex(32)}])
    value = session.scalar(select(Setting.value).where(Setting.key == SECRET_KEY))
    assert value is not None
    return bytes.fromhex(value)
