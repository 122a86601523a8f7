"""Author aliases: `living-with-als+a7k2qxm4b@lists.example.org` stands for one author.

A post sent From the list carries its author's alias, so members can write to the author
privately without learning the address, and DMARC still passes (the list's domain signs).
The alias is an HMAC of the list and the address: stable across posts, unguessable, and
needing no table. Pure: the secret comes in as an argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable

from listserv.core.addresses import tagged

ALIAS_RE = re.compile(r"^a[a-z2-7]{12}$")


def alias(secret: bytes, list_address: str, address: str) -> str:
    """The detail part of an author's alias on a list ('a' and 12 base32 characters)."""
    text = f"alias\0{list_address.lower()}\0{address.lower()}".encode()
    digest = hmac.new(secret, text, hashlib.sha256).digest()[:8]
    return "a" + base64.b32encode(digest).decode().lower()[:12]


def alias_address(secret: bytes, list_address: str, address: str) -> str:
    return tagged(list_address, alias(secret, list_address, address))


def is_alias(detail: str | None) -> bool:
    return bool(detail and ALIAS_RE.match(detail))


def owner_of(secret: bytes, list_address: str, detail: str,
             addresses: Iterable[str]) -> str | None:
    """Which of `addresses` (the list's members) an alias stands for, if any."""
    for address in addresses:
        if hmac.compare_digest(alias(secret, list_address, address), detail.lower()):
            return address
    return None
