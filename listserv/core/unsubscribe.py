"""A member's own way out of a list: one `u` token, bound to the list and the address, in a
leave address (`LIST-leave+TOKEN@`) and, with the web on, a one-click URL (`/u/TOKEN`).

Every copy that names a member's own links takes them from `links`. Two ways put them in a
post's copy (`outbound.finishing`): with `[web] base_url` the post is composed again for each
member, since its footer shows the URL (0.41 ms per recipient, `bench/finishing.py`); without
it only List-Unsubscribe differs, and `personalize` swaps that header in the shared bytes
(0.01 ms per recipient). Pure: the secret and the time come in as arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from listserv.core import tokens
from listserv.core.addresses import role_address, tagged


def binding(list_address: str, address: str) -> str:
    """What a `u` token is bound to: this list and this address."""
    return f"{list_address} {address}"


def personal_leave_address(secret: bytes, list_addr: str, member_id: int, address: str,
                           now: datetime) -> str:
    """A member's own leave address: acting on it needs no further confirmation."""
    token = tokens.issue(secret, "u", member_id, binding(list_addr, address), now, None)
    return tagged(role_address(list_addr, "leave"), token)


@dataclass(frozen=True)
class Links:
    """Where one member leaves one list: the one-click URL (when the web is on) and mail."""

    url: str
    mailto: str

    def header(self) -> str:
        """The RFC 2369 List-Unsubscribe value, HTTPS first as RFC 8058 asks."""
        return ", ".join(f"<{u}>" for u in (self.url, self.mailto) if u)


def links(secret: bytes, base_url: str, list_address: str, member_id: int, address: str,
          now: datetime) -> Links:
    """A member's links; no URL without `base_url` (the web's public address)."""
    leave = personal_leave_address(secret, list_address, member_id, address, now)
    token = leave.partition("+")[2].rpartition("@")[0]
    url = f"{base_url.rstrip('/')}/u/{token}" if base_url else ""
    return Links(url, "mailto:" + leave)


# The generic List-Unsubscribe header compose.list_headers writes (possibly folded).
_GENERIC_RE = re.compile(rb"List-Unsubscribe:\s*<mailto:([^<>@\s]+)-leave@([^<>@\s]+)>\r\n")


def personalize(message: bytes, secret: bytes, member_id: int | None, recipient: str,
                now: datetime) -> bytes:
    """A post as one member receives it without the web: List-Unsubscribe carries their
    personal token, so one message from their mail program removes them (RFC 2369). The
    token is bound to the address the delivery goes to, which is the member's address."""
    match = _GENERIC_RE.search(message)
    if member_id is None or match is None:
        return message
    list_addr = f"{match[1].decode()}@{match[2].decode()}"
    value = links(secret, "", list_addr, member_id, recipient, now).header()
    header = f"List-Unsubscribe: {value}\r\n".encode()
    return message[:match.start()] + header + message[match.end():]
