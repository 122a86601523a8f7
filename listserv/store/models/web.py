"""The web archive's readers: sign-in requests (the rate limit) and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from listserv.store.models.base import Base, UTCDateTime


class SignInRequest(Base):
    """One sign-in link asked for on the web, by a member or not: the single-use token names
    this row, and the rows of the last hour are the rate limit per address and per client."""

    __tablename__ = "web_signin_requests"
    __table_args__ = (Index("ix_web_signin_address_at", "address", "at"),
                      Index("ix_web_signin_client_at", "client", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)



class WebSession(Base):
    """A reader signed in on the web; the cookie names the row and is signed with the token
    secret, and signing out deletes the row, so a copied cookie stops working too."""

    __tablename__ = "web_sessions"
    __table_args__: ClassVar[dict[str, Any]] = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
