"""VERP: each member's copy of a post carries its own envelope sender, so a bounce names
the member by the address it comes back to, without parsing the bounce.

`living-with-als@lists.example.org` sending to `alice@example.org` uses the envelope
sender `living-with-als-bounces+alice=example.org=k2m4q7ra@lists.example.org` (qmail's
scheme, plus a short HMAC). Anyone can type a VERP address, so the address alone would let
a stranger raise any member's bounce score: the HMAC, bound to the list and the member's
address, is what a stranger cannot make up. Pure: the secret comes in as an argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from listserv.core.addresses import tagged

# 40 bits: a forger needs about 2**39 emails to hit one member's address, and each wrong
# guess is dropped and logged. Short because the whole local part should fit in 64 octets.
MAC_BYTES = 5


def _mac(secret: bytes, bounces_address: str, recipient: str) -> str:
    text = f"verp\0{bounces_address.lower()}\0{recipient.lower()}".encode()
    digest = hmac.new(secret, text, hashlib.sha256).digest()[:MAC_BYTES]
    return base64.b32encode(digest).decode().lower()


def encode(bounces_address: str, recipient: str, secret: bytes) -> str:
    """The envelope sender of one recipient's copy, from the list's -bounces address."""
    local, _, domain = recipient.rpartition("@")
    mac = _mac(secret, bounces_address, recipient)
    return tagged(bounces_address, f"{local}={domain}={mac}")


def decode(bounces_address: str, detail: str | None, secret: bytes) -> str | None:
    """The recipient a `-bounces+DETAIL` address stands for, or None unless its HMAC is ours.

    The detail is split at its last two '=' since a local part may itself contain one.
    Routing lower-cases local parts, so the HMAC is over the lower-cased address.
    """
    rest, eq, mac = (detail or "").rpartition("=")
    local, eq2, domain = rest.rpartition("=")
    if not eq or not eq2 or not local or not domain or "@" in domain:
        return None
    recipient = f"{local}@{domain.lower()}"
    if not hmac.compare_digest(_mac(secret, bounces_address, recipient), mac.lower()):
        return None
    return recipient
