"""A cap on concurrent SMTP sessions that idle connections cannot use to lock mail out.

aiosmtpd accepts any number of connections. Here at most `limit` are served; when all
slots are taken, the session that has been quiet longest without an open transaction is
closed to make room (as Postfix shortens its timeouts under stress), so a thousand idle
or trickling connections cannot keep a real post from its 250. Only when every slot holds
an open transaction does a newcomer get 421 4.7.0. Sessions in a transaction are bounded
by the receiver's transaction time cap instead.

One client address holds at most `per_ip` sessions (421 4.7.0 beyond), so one source cannot
take every slot; the trusted relays (a front MTA sends all its mail from one address) are
exempt. An IPv6 client is counted by its /64, the least a site is given: one host can
have its own 2**64 addresses.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Protocol, cast


class GatedSession(Protocol):
    transport: asyncio.BaseTransport | None

    @property
    def in_transaction(self) -> bool: ...


def client_ip(peername: object) -> str:
    """The client's address from a transport's peername ('' when there is none, as for a
    Unix socket); an IPv4 address mapped into IPv6 counts as itself."""
    if not isinstance(peername, tuple) or not peername:
        return ""
    try:
        address = ip_address(peername[0])
    except ValueError:
        return str(peername[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def share(ip: str) -> str:
    """What one client's share is counted by: its address, or for IPv6 its /64."""
    if ":" not in ip:
        return ip
    try:
        return str(ip_network(f"{ip}/64", strict=False))
    except ValueError:
        return ip


class Trusted:
    """Whether a client address is one of the trusted relays (addresses or networks)."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks: list[IPv4Network | IPv6Network] = [
            ip_network(t, strict=False) for t in trusted]

    def __call__(self, ip: str) -> bool:
        try:
            address = ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class SessionGate:
    def __init__(self, limit: int, evicted_reply: str,
                 clock: Callable[[], float] = time.monotonic, per_ip: int | None = None,
                 trusted: Iterable[str] = ()) -> None:
        self.limit = limit
        self.evicted_reply = evicted_reply
        self.clock = clock
        self.per_ip = per_ip or limit
        self.is_trusted = Trusted(trusted)
        self._last_active: dict[GatedSession, float] = {}
        self._ip: dict[GatedSession, str] = {}
        self._per_ip_count: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._last_active)

    def crowded(self, ip: str) -> bool:
        """The address already holds its share of sessions (never a trusted relay)."""
        return self._per_ip_count[share(ip)] >= self.per_ip and not self.is_trusted(ip)

    def admit(self, session: GatedSession, ip: str = "") -> bool:
        """Take a slot for a new session, closing the idlest one if need be."""
        if len(self._last_active) >= self.limit:
            idle = [(t, id(s), s) for s, t in self._last_active.items() if not s.in_transaction]
            if not idle:
                return False
            self._close(min(idle, key=lambda item: item[:2])[2], self.evicted_reply)
        self._last_active[session] = self.clock()
        self._ip[session] = share(ip)
        self._per_ip_count[share(ip)] += 1
        return True

    def touch(self, session: GatedSession) -> None:
        """The session completed a command (we answered it)."""
        if session in self._last_active:
            self._last_active[session] = self.clock()

    def leave(self, session: GatedSession) -> None:
        self._last_active.pop(session, None)
        ip = self._ip.pop(session, None)
        if ip is not None:
            self._per_ip_count[ip] -= 1
            if not self._per_ip_count[ip]:
                del self._per_ip_count[ip]

    def close_idle(self, reply: str) -> int:
        """Close every session without an open transaction (shutdown); how many."""
        idle = [s for s in self._last_active if not s.in_transaction]
        for session in idle:
            self._close(session, reply)
        return len(idle)

    def _close(self, session: GatedSession, reply: str) -> None:
        self.leave(session)
        transport = session.transport
        if transport is not None and not transport.is_closing():
            say_and_close(transport, reply)


def say_and_close(transport: asyncio.BaseTransport, reply: str) -> None:
    """Send a last reply line and close. A TCP session's transport always writes; uvloop's
    do not derive from asyncio.WriteTransport, so no isinstance check can tell."""
    cast(asyncio.WriteTransport, transport).write(reply.encode() + b"\r\n")
    transport.close()
