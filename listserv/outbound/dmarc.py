"""DMARC policies looked up in DNS with short timeouts and cached, for `[dmarc] lookup`.

Any failure (timeout, SERVFAIL, no record) counts as "unknown", and unknown means we rewrite
From: a slow resolver may cost an author their From, never the list its deliverability.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import dns.exception
import dns.resolver

from listserv.core import dmarc

log = logging.getLogger(__name__)

Lookup = Callable[[str], list[str]]


def dns_txt(timeout: float) -> Lookup:
    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout

    def lookup(name: str) -> list[str]:
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.exception.DNSException, OSError):
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    return lookup


class Policies:
    """The DMARC policy of author domains, each asked at most once per `ttl` seconds."""

    def __init__(self, lookup: Lookup, ttl: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.lookup = lookup
        self.ttl = ttl
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def policy(self, domain: str) -> str | None:
        domain = domain.lower()
        now = self.monotonic()
        with self._lock:
            cached = self._cache.get(domain)
        if cached and cached[0] > now:
            return cached[1]
        own = self.lookup(f"_dmarc.{domain}")
        org = dmarc.organizational(domain)
        value = dmarc.policy(own, self.lookup(f"_dmarc.{org}") if org != domain else None)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[domain] = (now + self.ttl, value)
        return value

    def keeps_from(self, address: str) -> bool:
        """True when the author's domain publishes p=none: their From may pass through."""
        return self.policy(address.rpartition("@")[2]) == "none"
