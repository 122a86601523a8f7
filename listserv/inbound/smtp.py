"""The aiosmtpd handler: short hooks that route, ingest and answer from the replies table."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as OrmSession

from listserv.app import App
from listserv.config import Config
from listserv.core.addresses import Route, route
from listserv.core.aliases import is_alias
from listserv.core.commands import Command
from listserv.core.message import Parsed
from listserv.core.replies import Outcome, reply, translate
from listserv.inbound import emergency, moderation, relay
from listserv.inbound import requests as membership
from listserv.inbound.dispatch import dispatch
from listserv.inbound.gate import SessionGate, client_ip, say_and_close
from listserv.inbound.groupcommit import GroupCommitter
from listserv.inbound.incoming import Authenticity, Incoming
from listserv.outbound.dmarc import Policies, dns_txt
from listserv.store.database import TEMPORARY_ERRORS, Database, is_disk_full, list_addresses
from listserv.store.models import Held, MailingList

log = logging.getLogger(__name__)

# Roles the receiver accepts mail for; the others answer 550 5.1.1 like unknown addresses.
ACCEPTED_ROLES = ("post", "bounces", "fbl", *membership.ROLES)


# Commands that move no message forward (Postfix calls them junk commands): a session
# may send `[receiver] max_junk_commands` of them between two stored messages.
NO_PROGRESS = frozenset({"NOOP", "RSET", "HELP", "VRFY", "EXPN"})

SmtpCommand = Callable[[str | None], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SessionLimits:
    """How long one transaction may stay open, and how many commands without progress a
    session may send, timed by `clock` (the server's clock, which tests move)."""

    max_transaction: timedelta = timedelta(seconds=120)
    max_junk: int = 20
    clock: Callable[[], datetime] = _utcnow


class ListservSMTP(SMTP):
    """aiosmtpd's protocol with its built-in replies given enhanced status codes, admitted
    through a session gate (caps on concurrent sessions, overall and per client address),
    with a cap on the time of one transaction and on commands that make no progress:
    aiosmtpd restarts its timeout at every command, so NOOP alone kept a session forever.
    """

    def __init__(self, handler: Handler, gate: SessionGate,
                 limits: SessionLimits = SessionLimits(), **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.gate = gate
        self.limits = limits
        self._junk = 0
        self._quiet = False  # answering a command without progress: not activity
        self._last_reply = ""
        self._transaction: tuple[Envelope, datetime] | None = None
        # aiosmtpd dispatches every command through this table: each one is checked first.
        self._smtp_methods = {name: self._guarded(name, command)
                              for name, command in self._smtp_methods.items()}

    @property
    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.session is None:
            ip = client_ip(transport.get_extra_info("peername"))
            if self.gate.crowded(ip):
                log.info("session from %s refused: %d sessions from that address", ip,
                         self.gate.per_ip)
                say_and_close(transport, reply(Outcome.TOO_MANY_FROM_ADDRESS))
                return
            if not self.gate.admit(self, ip):
                say_and_close(transport, reply(Outcome.TOO_MANY_SESSIONS))
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.gate.leave(self)
        if self.session is not None:  # not for a connection the gate turned away
            super().connection_lost(error)

    async def push(self, status: str) -> None:
        if not self._quiet:
            self.gate.touch(self)
        self._last_reply = status
        await super().push(translate(status))

    def _guarded(self, name: str, command: SmtpCommand) -> SmtpCommand:
        """The command, run only while the session stays within its caps."""

        @functools.wraps(command)
        async def run(arg: str | None) -> None:
            refusal = None if name == "QUIT" else self._over_caps(name)
            if refusal is not None:
                await self.push(reply(refusal))
                if self.transport is not None:
                    self.transport.close()
                return
            self._quiet = self._makes_no_progress(name)
            try:
                await command(arg)
            finally:
                self._quiet = False
            if name == "DATA" and self._last_reply.startswith("250"):
                self._junk = 0  # a message stored: progress
            if self.in_transaction and (self._transaction is None
                                        or self._transaction[0] is not self.envelope):
                self._transaction = (self.envelope, self.limits.clock())

        return run

    def _makes_no_progress(self, name: str) -> bool:
        """NOOP and its kind, and a greeting after the first (it only resets the state)."""
        greeted = self.session is not None and self.session.host_name is not None
        return name in NO_PROGRESS or (name in ("HELO", "EHLO") and greeted)

    def _over_caps(self, name: str) -> Outcome | None:
        """Why this session must end before `name` runs, or None."""
        if self.in_transaction and self._transaction is not None \
                and self._transaction[0] is self.envelope \
                and self.limits.clock() - self._transaction[1] > self.limits.max_transaction:
            log.info("session from %s closed: transaction open over %s", self._peer(),
                     self.limits.max_transaction)
            return Outcome.TRANSACTION_TOO_LONG
        if self._makes_no_progress(name):
            self._junk += 1
            if self._junk > self.limits.max_junk:
                log.info("session from %s closed: %d commands without progress",
                         self._peer(), self.limits.max_junk)
                return Outcome.NO_PROGRESS
        return None

    def _peer(self) -> str:
        return client_ip(self.session.peer if self.session is not None else None)

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
        return target if target.kind in ("list", "postmaster") else None

    def read(self, rcpt: str) -> Route:
        """Read the list addresses again and route the recipient (a query: run in a thread)."""
        with self.db.read() as session:
            lists = list_addresses(session)
        self._lists = lists
        self._domains = {self.domain} | {a.rpartition("@")[2] for a in lists}
        self._read_at = time.monotonic()
        return route(rcpt, self._domains, lists)


class Handler:
    def __init__(self, app: App, on_post: Callable[[], None] = lambda: None) -> None:
        self.db = db = app.db
        self.config = config = app.config
        self.clock = app.clock
        self.templates = app.templates
        self.on_post = on_post
        self.emergency = config.base_dir / "var" / "emergency"
        self.committer = GroupCommitter(db)
        self.lists = KnownLists(db, config.lists.domain)
        # Posts whose From our front MTA found forged are held (its Authentication-Results,
        # under the authserv-id ARC records too); DMARC records are looked up only with
        # [dmarc] lookup.
        self.dmarc: Policies | None = (
            Policies(dns_txt(config.dmarc.timeout), config.dmarc.cache_seconds)
            if config.dmarc.lookup else None)
        # The routes found at RCPT, kept for DATA instead of routing every recipient again
        # (a list deleted in between is caught by ingest, which looks the list up anyway).
        self._accepted: weakref.WeakKeyDictionary[Envelope, list[Route]] = (
            weakref.WeakKeyDictionary())

    def on_held(self, session: OrmSession, ml: MailingList, held: Held, parsed: Parsed,
                sender: str, now: datetime) -> None:
        moderation.on_held(session, self.config, self.templates, ml, held, parsed, sender, now)

    def on_command(self, session: OrmSession, ml: MailingList, parsed: Parsed, raw: bytes,
                   sender: str, command: Command, now: datetime) -> None:
        membership.on_plain_command(session, self.config, self.templates, ml, parsed, raw,
                                    sender, command, now, self.authenticity())

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
        if target.kind == "postmaster":
            envelope.rcpt_tos.append(address)
            self._accepted.setdefault(envelope, []).append(target)
            return reply(Outcome.RECIPIENT_OK)
        if target.kind != "list" or target.role not in ACCEPTED_ROLES:
            log.info("rcpt refused (unknown) from=%s to=%s", envelope.mail_from, address)
            return reply(Outcome.UNKNOWN_RECIPIENT)
        if target.role == "post" and is_alias(target.detail):
            outcome = await asyncio.to_thread(relay.check_rcpt, self.db, self.config, target)
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
        incoming = Incoming(raw, envelope.mail_from, tuple(envelope.rcpt_tos),
                            self.config.limits)
        try:
            outcome = await dispatch(self, incoming, self._accepted.pop(envelope, []))
        except Exception as exc:  # every failure becomes a 4xx: the client keeps the message
            return await self._failure(exc, raw, envelope)
        return reply(outcome)

    def authenticity(self) -> Authenticity:
        return Authenticity(
            self.config.dkim.arc_authserv_id or self.config.lists.domain,
            self.dmarc.policy if self.dmarc is not None else None)

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
    return SessionGate(config.receiver.max_sessions, reply(Outcome.EVICTED_IDLE),
                       per_ip=config.receiver.max_sessions_per_ip,
                       trusted=config.receiver.trusted_relays)


def smtp_factory(handler: Handler, config: Config, gate: SessionGate) -> Callable[[], Any]:
    def make() -> ListservSMTP:
        return ListservSMTP(
            handler,
            gate,
            SessionLimits(timedelta(seconds=config.receiver.max_transaction_seconds),
                          config.receiver.max_junk_commands, handler.clock),
            data_size_limit=config.receiver.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=config.lists.domain,
            ident="listserv",
            timeout=config.receiver.timeout,
        )

    return make
