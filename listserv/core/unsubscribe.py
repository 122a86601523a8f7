"""Personal unsubscribe addresses: each member's copy of a post names its own leave token.

Pure: the secret and the time come in as arguments.
"""

from __future__ import annotations

import re
from datetime import datetime

from listserv.core import tokens
from listserv.core.addresses import role_address, tagged


def personal_leave_address(secret: bytes, list_addr: str, member_id: int, address: str,
                           now: datetime) -> str:
    """A member's own leave address: acting on it needs no further confirmation."""
    token = tokens.issue(secret, "u", member_id, f"{list_addr} {address}", now, None)
    return tagged(role_address(list_addr, "leave"), token)


# The generic List-Unsubscribe header compose.list_headers writes (possibly folded).
_GENERIC_RE = re.compile(rb"List-Unsubscribe:\s*<mailto:([^<>@\s]+)-leave@([^<>@\s]+)>\r\n")


def personalize(message: bytes, secret: bytes, member_id: int | None, recipient: str,
                now: datetime) -> bytes:
    """A post as one member receives it: List-Unsubscribe carries their personal token, so
    one message from their mail program removes them (RFC 2369). The token is bound to the
    address the delivery goes to, which is the member's address."""
    match = _GENERIC_RE.search(message)
    if member_id is None or match is None:
        return message
    list_addr = f"{match[1].decode()}@{match[2].decode()}"
    personal = personal_leave_address(secret, list_addr, member_id, recipient, now)
    header = f"List-Unsubscribe: <mailto:{personal}>\r\n".encode()
    return message[:match.start()] + header + message[match.end():]
