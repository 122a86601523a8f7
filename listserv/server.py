"""Asyncio wiring: the SMTP receiver and the outbox worker in one process, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp.web import AppRunner

from . import web
from .config import Config
from .db import Database
from .outbox import Outbox
from .receiver import Handler, smtp_factory
from .templating import environment
from .transports import MaildirDelivery, SmtpRelay, Transport

log = logging.getLogger("listserv.server")

SHUTDOWN_GRACE = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_transport(config: Config) -> Transport:
    if config.delivery.transport == "smtp":
        return SmtpRelay(config.delivery.host, config.delivery.port,
                         config.delivery.connections, config.delivery.timeout)
    return MaildirDelivery(config.maildir_path)


ROLES = ("receiver", "dispatcher")


class Server:
    """The roles this process plays: receiver (SMTP in), dispatcher (outbox out), or both."""

    def __init__(
        self, config: Config, clock: Callable[[], datetime] = utcnow, roles: tuple[str, ...] = ROLES
    ) -> None:
        self.config = config
        self.clock = clock
        self.roles = roles
        self.db = Database(config.database_url, config.database.busy_timeout)
        self.transport = make_transport(config)
        self.outbox = Outbox(self.db, config, self.transport, environment(config.base_dir), clock)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._smtp: asyncio.Server | None = None
        self._worker: asyncio.Task[None] | None = None
        self.port = config.receiver.port
        self._web: AppRunner | None = None
        self.web_port = config.web.port

    async def start(self) -> None:
        await asyncio.to_thread(self.db.create_schema)
        if "receiver" in self.roles:
            handler = Handler(self.db, self.config, self.clock, on_post=self._wake.set)
            loop = asyncio.get_running_loop()
            self._smtp = await loop.create_server(
                smtp_factory(handler, self.config),
                self.config.receiver.host,
                self.config.receiver.port,
            )
            self.port = self._smtp.sockets[0].getsockname()[1]
            log.info("receiving on %s:%d", self.config.receiver.host, self.port)
            if self.config.web.base_url:
                app = web.application(self.db, self.outbox.templates, self.clock)
                self._web, self.web_port = await web.start(
                    app, self.config.web.host, self.config.web.port)
                log.info("one-click unsubscribe on %s:%d for %s", self.config.web.host,
                         self.web_port, self.config.web.base_url)
        if "dispatcher" in self.roles:
            self._worker = asyncio.create_task(self.outbox.run_forever(self._stop, self._wake))
            log.info("delivering by %s", self.config.delivery.transport)

    async def stop(self) -> None:
        """Stop taking sessions, let in-flight deliveries finish briefly, release the rest."""
        if self._smtp is not None:
            self._smtp.close()
        if self._web is not None:
            await self._web.cleanup()
        self._stop.set()
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

    async def serve_until_signalled(self) -> None:
        await self.start()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        log.info("shutting down")
        await self.stop()


def run(config: Config, roles: tuple[str, ...] = ROLES) -> None:
    asyncio.run(Server(config, roles=roles).serve_until_signalled())
