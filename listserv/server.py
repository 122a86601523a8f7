"""Asyncio wiring: the SMTP receiver and the outbox worker in one process, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable
from datetime import datetime

import uvloop
from aiohttp.web import AppRunner

from listserv.app import App, utcnow
from listserv.config import Config
from listserv.core.replies import Outcome, reply
from listserv.inbound import moderation
from listserv.inbound.handoff import Acceptor, Handed
from listserv.inbound.smtp import Handler, session_gate, smtp_factory
from listserv.outbound.outbox import Outbox
from listserv.outbound.processes import DispatcherPool, Woken, dispatcher_count
from listserv.outbound.transports import MaildirDelivery, SmtpRelay, Transport
from listserv.schedule.scheduler import Scheduler
from listserv.web import app as web

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def printable(text: str) -> str:
    """`text` with every character that is not printable (controls, line and paragraph
    separators, format characters, lone surrogates) written as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class EscapingFormatter(logging.Formatter):
    """One record, one line: the message line escaped; a traceback (ours) keeps its lines,
    with their other control characters escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))


def configure_logging(level: int) -> None:
    """Addresses, HELO names, commands and header values reach our log lines (and
    aiosmtpd's): a CR, LF, U+2028 or a terminal escape in them would start a line that reads
    like one of ours, or rewrite the screen, so every handler escapes them."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def make_transport(config: Config) -> Transport:
    if config.delivery.transport == "smtp":
        return SmtpRelay(config.delivery.host, config.delivery.port,
                         config.delivery.connections, config.delivery.timeout)
    return MaildirDelivery(config.maildir_path)


ROLES = ("receiver", "dispatcher", "scheduler", "web")


class Server:
    """The roles this process plays: receiver (SMTP in), dispatcher (outbox out), scheduler
    (digests due), web (the archive and one-click unsubscribe), any or all of them.

    With `[receiver] workers` above 1, this process accepts the SMTP connections and hands
    them to that many receiver processes, each a Server given its end of the `handoff`.
    With several dispatchers (`processes.dispatcher_count`), the dispatcher role here starts
    that many dispatcher processes, each a Server given its end of a `woken` channel, and
    passes on every wake-up.
    """

    def __init__(
        self, config: Config, clock: Callable[[], datetime] = utcnow,
        roles: tuple[str, ...] = ROLES, handoff: socket.socket | None = None,
        report_posts: bool = False, woken: socket.socket | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.roles = roles
        self.handoff = handoff
        self.report_posts = report_posts  # to the acceptor at the other end of `handoff`
        self.woken = woken  # a dispatcher process's channel from the serving process
        self.dispatchers: DispatcherPool | None = None  # with several dispatchers
        self._woken: Woken | None = None
        self.app = App(config, clock)
        self.db = self.app.db
        self.transport = make_transport(config)
        self.outbox = Outbox(self.db, config, self.transport, self.app.templates, clock)
        self.scheduler = Scheduler(self.app, on_run=self._wake_outbox)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._smtp: asyncio.Server | None = None
        self.acceptor: Acceptor | None = None  # with [receiver] workers above 1
        self._handed: Handed | None = None
        self.handler: Handler | None = None  # the receiver's, once started in this process
        self._done = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._expirer: asyncio.Task[None] | None = None
        self._scheduling: asyncio.Task[None] | None = None
        self.port = config.receiver.port
        self.gate = session_gate(config)
        self._web: AppRunner | None = None
        self.web_port = config.web.port

    async def start(self) -> None:
        await asyncio.to_thread(self.db.create_schema)
        if "receiver" in self.roles:
            await self._start_receiving()
        if "web" in self.roles and self.handoff is None:
            app = web.application(self.app,
                                  self._wake_outbox if "dispatcher" in self.roles else None)
            self._web, self.web_port = await web.start(
                app, self.config.web.host, self.config.web.port)
            log.info("web archive on http://%s:%d/ (public URL: %s)", self.config.web.host,
                     self.web_port, self.config.web.base_url or "none set")
        if "dispatcher" in self.roles:
            self._start_dispatching()
            if self.woken is None:  # the serving process expires held messages, once
                await self._expire_once()
                self._expirer = asyncio.create_task(self._expire_held())
        if "scheduler" in self.roles:
            # The first check runs before start returns: a period missed while the server
            # was down goes out now, not one check interval later.
            await self.scheduler.run_safely()
            self._scheduling = asyncio.create_task(self.scheduler.run_forever(self._stop))

    def _start_dispatching(self) -> None:
        count = dispatcher_count(self.config)
        if self.woken is None and count > 1:
            self.dispatchers = DispatcherPool(self.config, count, dispatcher_process)
            self.dispatchers.start()
            log.info("delivering by %s with %d dispatcher processes",
                     self.config.delivery.transport, count)
            return
        if self.woken is not None:
            self._woken = Woken(self.woken, self._wake.set, on_close=self._done.set)
            self._woken.start()
        self._worker = asyncio.create_task(self.outbox.run_forever(self._stop, self._wake))
        log.info("delivering by %s", self.config.delivery.transport)

    async def _start_receiving(self) -> None:
        if self.config.receiver.workers > 1 and self.handoff is None:
            dispatching = "dispatcher" in self.roles
            self.acceptor = Acceptor(self.config, self.config.receiver.workers,
                                     on_post=self._wake_outbox if dispatching else None,
                                     receiver_main=receiver_process)
            await self.acceptor.start()
            self.port = self.acceptor.port
            log.info("receiving on %s:%d with %d receiver processes",
                     self.config.receiver.host, self.port, self.config.receiver.workers)
            return
        handler = self.handler = Handler(self.app, on_post=self._posted)
        factory = smtp_factory(handler, self.config, self.gate)
        if self.handoff is not None:
            self._handed = Handed(self.handoff, factory, on_close=self._done.set,
                                  report_posts=self.report_posts)
            self._handed.start()
            return
        self._smtp = await asyncio.get_running_loop().create_server(
            factory,
            self.config.receiver.host,
            self.config.receiver.port,
            reuse_port=self.config.receiver.reuse_port or None,
            backlog=1024,  # a burst of connections waits in the kernel, not in SYN retries
        )
        self.port = self._smtp.sockets[0].getsockname()[1]
        log.info("receiving on %s:%d", self.config.receiver.host, self.port)

    def _posted(self) -> None:
        self._wake_outbox()
        if self._handed is not None:
            self._handed.notify_post()

    def _wake_outbox(self) -> None:
        self._wake.set()
        if self.dispatchers is not None:
            self.dispatchers.wake()

    async def stop(self) -> None:
        """Stop taking sessions, let in-flight deliveries finish briefly, release the rest."""
        if self.acceptor is not None:
            await self.acceptor.stop()
        if self._handed is not None:
            self._handed.stop()
        if self._woken is not None:
            self._woken.stop()
        if self._smtp is not None:
            self._smtp.close()
        self.gate.close_idle(reply(Outcome.SHUTTING_DOWN))
        if self._web is not None:
            await self._web.cleanup()
        self._stop.set()
        if self._expirer is not None:
            self._expirer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expirer
        if self._scheduling is not None:
            await self._scheduling
        if self.dispatchers is not None:
            await self.dispatchers.stop()
        if self._worker is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), SHUTDOWN_GRACE)
            except TimeoutError:
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
            await asyncio.to_thread(self.outbox.release)
        await self.transport.close()
        self.db.dispose()
        log.info("stopped")

    async def _expire_once(self) -> None:
        """Discard held messages past their age; a failure waits for the next run."""
        try:
            if await asyncio.to_thread(moderation.expire, self.db, self.config,
                                       self.app.templates, self.clock()):
                self._wake_outbox()
        except Exception:
            log.exception("expiring held messages failed")

    async def _expire_held(self) -> None:
        """After the run at start, one every [moderation] expire_every_seconds until stop."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(),
                                       self.config.moderation.expire_every_seconds)
            if self._stop.is_set():
                return
            await self._expire_once()

    def _signalled(self) -> None:
        """Ctrl-C (or systemd) signals the whole process group: a receiver or dispatcher
        process that ends on it before `stop` runs is not replaced."""
        for pool in (self.acceptor, self.dispatchers):
            if pool is not None:
                pool.stopping = True
        self._done.set()

    async def serve_until_signalled(self) -> None:
        # Signals are caught before start: a Ctrl-C while start is still working (the first
        # digest check) must stop cleanly, not abort with mail already being delivered.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled)
        await self.start()
        await self._done.wait()
        log.info("shutting down")
        await self.stop()


def run(config: Config, roles: tuple[str, ...] = ROLES) -> None:
    uvloop.run(Server(config, roles=roles).serve_until_signalled())


def run_handed(config: Config, channel: socket.socket, report_posts: bool) -> None:
    """A receiver process serving the connections its acceptor hands over, until it ends."""
    uvloop.run(Server(config, roles=("receiver",), handoff=channel,
                      report_posts=report_posts).serve_until_signalled())


def receiver_process(config: Config, channel: socket.socket, log_level: int,
                     report_posts: bool) -> None:
    """The entry point of a receiver process (a fresh interpreter: spawned, not forked)."""
    configure_logging(log_level)
    run_handed(config, channel, report_posts)


def dispatcher_process(config: Config, channel: socket.socket, log_level: int) -> None:
    """The entry point of a dispatcher process: its own outbox loop until its channel
    ends (spawned, not forked)."""
    configure_logging(log_level)
    uvloop.run(Server(config, roles=("dispatcher",), woken=channel).serve_until_signalled())
