"""The aiosmtpd handler: short hooks that route, ingest and answer from the replies table."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as OrmSession

from . import bouncing, emergency, feedback, ingest, membership, moderation, relay
from .addresses import Route, route
from .aliases import is_alias
from .config import Config
from .db import TEMPORARY_ERRORS, Database, is_disk_full, list_addresses
from .gate import SessionGate, say_and_close
from .message import Parsed
from .models import Held, MailingList
from .replies import Outcome, combine, reply, translate
from .templating import environment

log = logging.getLogger("listserv.receiver")

# Roles the receiver accepts mail for; the others answer 550 5.1.1 like unknown addresses.
ACCEPTED_ROLES = ("post", "bounces", "fbl", *membership.ROLES)


class ListservSMTP(SMTP):
    """aiosmtpd's protocol with its built-in replies given enhanced status codes, admitted
    through a session gate (a cap on concurrent sessions)."""

    def __init__(self, handler: Handler, gate: SessionGate, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.gate = gate

    @property
    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.session is None and not self.gate.admit(self):
            say_and_close(transport, reply(Outcome.TOO_MANY_SESSIONS))
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.gate.leave(self)
        if self.session is not None:  # not for a connection the gate turned away
            super().connection_lost(error)

    async def push(self, status: str) -> None:
        self.gate.touch(self)
        await super().push(translate(status))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's own address parsing, with the same parser and answers, minus the
        class it defines on every call (measured: a fifth of its protocol time)."""
        if not arg:
            return "", ""
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
        except HeaderParseError:
            return None, None
        addr: str = address.addr_spec
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest


class KnownLists:
    """The addresses of our lists, read again when older than `ttl` seconds or when a
    recipient is none of them: RCPT to a known list costs no query. A list deleted meanwhile
    is still caught at DATA, where ingest reads the list row (451, and 550 once read again).
    """

    def __init__(self, db: Database, domain: str, ttl: float = 2.0) -> None:
        self.db = db
        self.domain = domain.lower()
        self.ttl = ttl
        self._lists: set[str] = set()
        self._domains = {self.domain}
        self._read_at = -math.inf

    def known(self, rcpt: str) -> Route | None:
        """The route of a recipient that is one of the lists read recently, else None."""
        if time.monotonic() - self._read_at > self.ttl:
            return None
        target = route(rcpt, self._domains, self._lists)
        return target if target.kind == "list" else None

    def read(self, rcpt: str) -> Route:
        """Read the list addresses again and route the recipient (a query: run in a thread)."""
        with self.db.read() as session:
            lists = list_addresses(session)
        self._lists = lists
        self._domains = {self.domain} | {a.rpartition("@")[2] for a in lists}
        self._read_at = time.monotonic()
        return route(rcpt, self._domains, lists)


class Handler:
    def __init__(
        self,
        db: Database,
        config: Config,
        clock: Callable[[], datetime],
        on_post: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.on_post = on_post
        self.emergency = config.base_dir / "var" / "emergency"
        self.templates = environment(config.base_dir)
        self.committer = ingest.GroupCommitter(db)
        self.lists = KnownLists(db, config.lists.domain)
        # The routes found at RCPT, kept for DATA instead of routing every recipient again
        # (a list deleted in between is caught by ingest, which looks the list up anyway).
        self._accepted: weakref.WeakKeyDictionary[Envelope, list[Route]] = (
            weakref.WeakKeyDictionary())

    def _on_held(self, session: OrmSession, ml: MailingList, held: Held, parsed: Parsed,
                 sender: str, now: datetime) -> None:
        moderation.on_held(session, self.config, self.templates, ml, held, parsed, sender, now)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        if not address.isascii() and not envelope.smtp_utf8:
            return reply(Outcome.NON_ASCII_ADDRESS)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply(Outcome.SENDER_OK)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if not address.isascii() and not envelope.smtp_utf8:
            return reply(Outcome.NON_ASCII_ADDRESS)
        if len(envelope.rcpt_tos) >= self.config.receiver.max_recipients:
            return reply(Outcome.TOO_MANY_RECIPIENTS)
        target = self.lists.known(address) or await asyncio.to_thread(self.lists.read, address)
        if target.kind == "relay":
            log.info("rcpt refused (relay) from=%s to=%s", envelope.mail_from, address)
            return reply(Outcome.RELAY_DENIED)
        if target.kind != "list" or target.role not in ACCEPTED_ROLES:
            log.info("rcpt refused (unknown) from=%s to=%s", envelope.mail_from, address)
            return reply(Outcome.UNKNOWN_RECIPIENT)
        if target.role == "post" and is_alias(target.detail):
            outcome = await asyncio.to_thread(
                relay.check_rcpt, self.db, self.config, target, envelope.mail_from or "")
            if outcome is not Outcome.RECIPIENT_OK:
                log.info("rcpt refused (%s) from=%s to=%s", outcome.value, envelope.mail_from,
                         address)
                return reply(outcome)
        envelope.rcpt_tos.append(address)
        self._accepted.setdefault(envelope, []).append(target)
        return reply(Outcome.RECIPIENT_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        declared = envelope.smtp_utf8 or "BODY=8BITMIME" in envelope.mail_options
        if not declared and not raw.isascii():
            log.info("undeclared 8-bit data from=%s refused", envelope.mail_from)
            return reply(Outcome.UNDECLARED_8BIT)
        try:
            routes = self._accepted.pop(envelope, [])
            # One post per list, even when a list is named twice (plain and thread address).
            posts = list({r.list_address: r for r in reversed(routes)
                          if r.kind == "list" and r.role == "post"
                          and not is_alias(r.detail)}.values())
            # Mail to an author's alias is relayed privately, unless it also went to the
            # list: then the author gets it as a post like everyone else.
            relays = [r for r in routes if r.kind == "list" and r.role == "post"
                      and is_alias(r.detail)]
            if relays and not posts:
                outcome = await asyncio.to_thread(
                    relay.receive, self.db, relays, raw, envelope.mail_from or "",
                    self.config, self.clock())
                log.info("alias mail from=%s to=%s: %s", envelope.mail_from,
                         ",".join(envelope.rcpt_tos), outcome.value)
                return reply(outcome)
            outcomes = []
            reports = [r for r in routes if r.kind == "list" and r.role in ("fbl", "bounces")]
            if reports:
                # A complaint (ARF) unsubscribes; anything else at -bounces is a bounce.
                outcomes.append(Outcome.DROPPED)
                removed = await asyncio.to_thread(
                    feedback.receive, self.db, reports, raw, self.config, self.clock())
                bounces = [r for r in reports if r.role == "bounces"]
                if removed is not None:
                    log.info("feedback report from=%s: unsubscribed %s", envelope.mail_from,
                             "; ".join(removed) or "nobody")
                elif bounces:
                    found = await asyncio.to_thread(bouncing.receive, self.db, bounces, raw,
                                                    self.config, self.templates, self.clock())
                    log.info("bounce from=%s to=%s: %d recorded (%s)", envelope.mail_from,
                             ",".join(envelope.rcpt_tos), found.recorded, found.detail)
            requests = [r for r in routes if r.kind == "list" and r.role in membership.ROLES]
            if requests:
                outcomes.append(await asyncio.to_thread(
                    membership.receive, self.db, self.config, self.templates, requests, raw,
                    envelope.mail_from or "", self.clock(),
                ))
                log.info("%s from=%s to=%s", outcomes[-1].value, envelope.mail_from,
                         ",".join(r.list_address or "" for r in requests))
                self.on_post()
            if posts:
                result = await asyncio.wrap_future(ingest.receive(
                    self.db, posts, raw, envelope.mail_from or "", self.config.limits,
                    self.clock(), self._on_held, self.committer,
                ))
                outcomes.append(result.outcome)
                log.info("%s from=%s to=%s size=%d: %s", result.outcome.value,
                         envelope.mail_from, ",".join(envelope.rcpt_tos), len(raw),
                         result.detail)
                if result.post_ids:
                    self.on_post()
        except Exception as exc:  # every failure becomes a 4xx: the client keeps the message
            return await self._failure(exc, raw, envelope)
        return reply(combine(outcomes))

    async def _failure(self, exc: Exception, raw: bytes, envelope: Envelope) -> str:
        if is_disk_full(exc):
            log.error("disk full while storing from=%s: %s", envelope.mail_from, exc)
            return reply(Outcome.DISK_FULL)
        if isinstance(exc, TEMPORARY_ERRORS):
            log.error("database error while storing from=%s: %s", envelope.mail_from, exc)
            return reply(Outcome.TEMPORARY_FAILURE)
        saved = await asyncio.to_thread(emergency.save, self.emergency, raw,
                                        self.config.limits)
        log.exception("unexpected error while storing from=%s; raw copy: %s",
                      envelope.mail_from, saved, exc_info=exc)
        return reply(Outcome.TEMPORARY_FAILURE)

    async def handle_exception(self, error: Exception) -> str:
        """Never let aiosmtpd answer '500 Error: (...)': a permanent bounce leaking internals."""
        if is_disk_full(error):
            return reply(Outcome.DISK_FULL)
        log.error("error in SMTP session: %r", error)
        return reply(Outcome.TEMPORARY_FAILURE)


def session_gate(config: Config) -> SessionGate:
    return SessionGate(config.receiver.max_sessions, reply(Outcome.EVICTED_IDLE))


def smtp_factory(handler: Handler, config: Config, gate: SessionGate) -> Callable[[], Any]:
    def make() -> ListservSMTP:
        return ListservSMTP(
            handler,
            gate,
            data_size_limit=config.receiver.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=config.lists.domain,
            ident="listserv",
            timeout=config.receiver.timeout,
        )

    return make
