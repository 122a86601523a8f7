"""HMAC-signed tokens that fit in an address: `list-confirm+j-12-6a1f3b2c-<signature>@...`.

A token names what it is for (kind), which row it acts on (id) and when it expires; the
signature binds those to the list and address it was issued for, so a token for one mailbox
or list is useless for another. Tokens are lower-case because routing lower-cases local
parts. Pure: the secret and the time come in as arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

# What a token authorises: joining or leaving after confirmation, leaving with a member's
# personal token (no expiry: it lives as long as the membership), moderating one message,
# signing in to the web archive, posting a held reply into the thread the member chose,
# changing one's delivery mode, sending a member their data, forgetting them (each after
# confirmation).
KINDS = {"j": "join", "l": "leave", "u": "unsubscribe", "m": "moderate", "s": "sign-in",
         "p": "post a held reply into the thread the member chose", "d": "delivery",
         "x": "export", "f": "forget"}

_TOKEN_RE = re.compile(r"^([a-z])-(\d{1,18})-([0-9a-z]{1,13})-([a-z2-7]{16})$")
SIGNATURE_BYTES = 10  # 80 bits: a forger needs 2**80 tries, each one an email


@dataclass(frozen=True)
class Token:
    kind: str
    ident: int
    expires: int  # Unix seconds; 0 never expires
    signature: str

    @property
    def key(self) -> str:
        """What single-use bookkeeping records: this very token, even if a row id is reused."""
        return f"{self.kind}-{self.ident}-{self.signature}"


class TokenError(ValueError):
    """A token we refuse; the message explains why, for the person who sent it."""


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _signature(secret: bytes, kind: str, ident: int, expires: str, binding: str) -> str:
    text = f"{kind}\0{ident}\0{expires}\0{binding.lower()}".encode()
    digest = hmac.new(secret, text, hashlib.sha256).digest()[:SIGNATURE_BYTES]
    return base64.b32encode(digest).decode().lower()


def issue(
    secret: bytes, kind: str, ident: int, binding: str, now: datetime, valid: timedelta | None
) -> str:
    """A token for `kind` on row `ident`, bound to `binding` (e.g. list and address)."""
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    expires = _base36(int((now + valid).timestamp())) if valid is not None else "0"
    return f"{kind}-{ident}-{expires}-{_signature(secret, kind, ident, expires, binding)}"


def peek(token: str) -> Token | None:
    """The unverified fields of a well-formed token, to look up what it must be bound to."""
    match = _TOKEN_RE.match(token.strip().lower())
    if not match or match[1] not in KINDS:
        return None
    return Token(match[1], int(match[2]), int(match[3], 36), match[4])


def verify(secret: bytes, token: str, binding: str, now: datetime) -> Token:
    """The token if its signature matches and it has not expired; else TokenError."""
    match = _TOKEN_RE.match(token.strip().lower())
    if not match or match[1] not in KINDS:
        raise TokenError("this is not a token we issued")
    kind, ident, expires = match[1], int(match[2]), match[3]
    expected = _signature(secret, kind, ident, expires, binding)
    if not hmac.compare_digest(expected, match[4]):
        raise TokenError("this token is not valid (it was altered or not issued by us)")
    deadline = int(expires, 36)
    if deadline and now.timestamp() > deadline:
        raise TokenError("this token has expired; please start again")
    return Token(kind, ident, deadline, match[4])
