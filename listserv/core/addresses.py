"""Addresses: normalize them and route a recipient to a list and a role.

`living-with-als@lists.example.org` posts; `living-with-als-request@...` takes commands;
`living-with-als+t12@...` posts into thread 12. Pure: the caller says which lists exist.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from email.utils import parseaddr
from typing import TypeVar

# Suffixes of a list's local part and the role each address plays.
ROLES = ("request", "owner", "join", "leave", "bounces", "confirm", "fbl")
# Every domain we receive for accepts it, in any case (RFC 5321 section 4.5.1).
POSTMASTER = "postmaster"

_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_LIST_LOCAL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


# RFC 5321 4.5.3.1: a local part of at most 64 octets; a path of at most 256 octets, its
# angle brackets included, so an address of at most 254.
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


class AddressError(ValueError):
    """An address that cannot be used; the message says why."""


def normalize(address: str, max_local: int = MAX_LOCAL_PART) -> str:
    """The canonical form: the domain lower-cased; the local part kept as written (RFC 5321),
    so mail goes to the spelling the member gave. Compare addresses by `identity`."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{_shown(address)} is not an email address")
    if len(local) > max_local:
        raise AddressError(f"{_shown(address)} has a local part of {len(local)} characters "
                           f"(RFC 5321 allows {max_local})")
    if len(address) > MAX_ADDRESS:
        raise AddressError(f"{_shown(address)} is {len(address)} characters long "
                           f"(RFC 5321 allows {MAX_ADDRESS})")
    if not _LOCAL_RE.match(local) or ".." in local or local.startswith(".") or local.endswith("."):
        raise AddressError(f"{_shown(address)} has an invalid local part")
    if not _DOMAIN_RE.match(domain):
        raise AddressError(f"{_shown(address)} has an invalid domain")
    return f"{local}@{domain.lower()}"


def identity(address: str) -> str:
    """Who an address is, for membership and duplicates: `A@Example.com` and `a@example.com`
    are one mailbox everywhere in practice, though RFC 5321 lets the local part differ."""
    return address.lower()


def _shown(address: str) -> str:
    """An address quoted in an error, cut short so a hostile one cannot flood the line."""
    return repr(address if len(address) <= 80 else address[:60] + "...")


def try_normalize(address: str, max_local: int = MAX_LOCAL_PART) -> str | None:
    try:
        return normalize(address, max_local)
    except AddressError:
        return None


_REMEMBERED_LENGTH = 320  # a display name and an address of the longest path RFC 5321 allows
T = TypeVar("T")
_ANGLE_ADDR_RE = re.compile(r"^(.*?)<([^<>]*)>\s*$", re.S)


def remembered(function: Callable[[str], T]) -> Callable[[str], T]:
    """Cache a pure function of a header value: the same people write again and again. Only
    values of a usual length are kept, so hostile 64 KB headers cannot fill memory."""
    cached = functools.lru_cache(maxsize=1024)(function)

    @functools.wraps(function)
    def call(value: str) -> T:
        return cached(value) if len(value) <= _REMEMBERED_LENGTH else function(value)

    return call


@remembered
def parse_mailbox(header_value: str) -> tuple[str, str | None]:
    """(display name, normalized address or None) from a From-like header value.

    The address in angle brackets wins: `parseaddr` takes the first address-like token,
    so `alice@example.com <bob@example.com>` (a spoofing pattern) would credit alice.
    """
    angle = _ANGLE_ADDR_RE.match(header_value.strip())
    if angle and "@" in angle[1] and '"' not in angle[1]:
        addr = angle[2].strip()
        return angle[1].strip(), try_normalize(addr) if addr else None
    name, addr = parseaddr(header_value)
    return name.strip(), try_normalize(addr) if addr else None


def list_address(name: str, domain: str) -> str:
    """The posting address of a list; list names are lower-case so roles parse unambiguously."""
    local, at, dom = name.rpartition("@")
    if not at:
        local, dom = name, domain
    local = local.strip().lower()
    if not _LIST_LOCAL_RE.match(local) or "+" in local:
        raise AddressError(
            f"{local!r} is not a valid list name (use a-z, 0-9, '.', '_' and '-')"
        )
    if local == POSTMASTER:
        raise AddressError(f"{local!r} is reserved: mail to it goes to the owners (RFC 5321)")
    if local.endswith(tuple(f"-{role}" for role in ROLES)):
        raise AddressError(f"{local!r} ends with a reserved suffix ({', '.join(ROLES)})")
    return normalize(f"{local}@{dom}")


@dataclass(frozen=True)
class Route:
    """Where a recipient goes: kind is 'list', 'postmaster' (its domain in `detail`),
    'unknown' (550 5.1.1) or 'relay' (550 5.7.1)."""

    kind: str
    list_address: str | None = None
    role: str = "post"
    detail: str | None = None


def list_id(list_addr: str) -> str:
    """The RFC 2919 list identifier: the address with its '@' turned into a dot."""
    return list_addr.replace("@", ".")


def route(recipient: str, local_domains: Collection[str], lists: Collection[str]) -> Route:
    """Route one RCPT TO address.

    `lists` holds the normalized posting addresses of existing lists; `local_domains` the
    lower-case domains we receive for. Anything else is a relay attempt, which we never serve.
    """
    if recipient.strip().strip("<>").strip().lower() == POSTMASTER:
        return Route("postmaster")  # RFC 5321 4.5.1: without a domain, too
    # Our own plus-addresses may pass 64 octets: the signed VERP of a member with a long
    # address does. RFC 5321 4.5.3.1 asks servers to accept longer ones where they can.
    address = try_normalize(recipient, max_local=MAX_ADDRESS)
    if address is None:
        return Route("unknown")
    local, _, domain = address.rpartition("@")
    if domain not in local_domains:
        return Route("relay")
    local = local.lower()
    if local == POSTMASTER:
        return Route("postmaster", detail=domain)
    base, plus, detail = local.partition("+")
    candidates = [(base, "post")]
    for role in ROLES:
        if base.endswith(f"-{role}"):
            candidates.append((base[: -len(role) - 1], role))
    for name, role in candidates:
        if f"{name}@{domain}" in lists:
            return Route("list", f"{name}@{domain}", role, detail if plus else None)
    return Route("unknown")


def tagged(list_addr: str, tag: str) -> str:
    """A plus-address of a list, e.g. the reply address of one thread."""
    local, _, domain = list_addr.rpartition("@")
    return f"{local}+{tag}@{domain}"


def thread_wish_address(list_addr: str, wish: str, thread_id: int) -> str:
    """Where a member writes to mute or follow one thread (`wish`), asked to confirm."""
    return tagged(role_address(list_addr, "request"), f"{wish}-t{thread_id}")


def role_address(list_addr: str, role: str) -> str:
    local, _, domain = list_addr.rpartition("@")
    return f"{local}-{role}@{domain}"
