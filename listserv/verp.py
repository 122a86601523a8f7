"""VERP: each member's copy of a post carries its own envelope sender, so a bounce names
the member by the address it comes back to, without parsing the bounce.

`living-with-als@lists.example.org` sending to `alice@example.org` uses the envelope
sender `living-with-als-bounces+alice=example.org@lists.example.org` (qmail's scheme).
"""

from __future__ import annotations

from .addresses import tagged


def encode(bounces_address: str, recipient: str) -> str:
    """The envelope sender of one recipient's copy, from the list's -bounces address."""
    local, _, domain = recipient.rpartition("@")
    return tagged(bounces_address, f"{local}={domain}")


def decode(detail: str | None) -> str | None:
    """The recipient a `-bounces+DETAIL` address stands for, or None if it names nobody.

    The detail is split at its last '=' since a local part may itself contain one.
    """
    local, eq, domain = (detail or "").rpartition("=")
    if not eq or not local or not domain or "@" in domain:
        return None
    return f"{local}@{domain.lower()}"
