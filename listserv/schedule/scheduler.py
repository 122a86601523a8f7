"""The server's scheduler role: now and then open the digest runs that are due and make the
owners' daily reports, then wake the outbox. Both are safe to run in many processes at once:
each is sent once by a unique row (digests, dailyreport)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from listserv.app import App
from listserv.schedule import dailyreport, pauses
from listserv.schedule.digests import Opened, schedule

log = logging.getLogger(__name__)


class Scheduler:
    """Checks every `lists.digest_check_seconds`; `on_run` wakes the outbox."""

    def __init__(self, app: App, on_run: Callable[[], None]) -> None:
        self.app = app
        self.config = app.config
        self.on_run = on_run

    async def run_once(self) -> list[Opened]:
        app = self.app
        opened = await asyncio.to_thread(schedule, app.db, app.config, app.templates,
                                         app.clock())
        for o in opened:
            log.info("digest %s of %s: %d posts, queued for %d readers",
                     o.period, o.list_address, o.posts, o.recipients)
        reported = await asyncio.to_thread(dailyreport.schedule, app.db, app.config,
                                           app.templates, app.clock())
        for r in reported:
            log.info("owners' report %s of %s: queued for %d owners",
                     r.day, r.list_address, r.owners)
        reminded = await asyncio.to_thread(pauses.end_pauses, app.db, app.config,
                                           app.templates, app.clock())
        if reminded:
            log.info("pauses ended: %d members reminded", reminded)
        if any(o.recipients for o in opened) or any(r.owners for r in reported) or reminded:
            self.on_run()
        log.info("digest check done: %d runs opened", len(opened))
        return opened

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Check every `lists.digest_check_seconds` until `stop` (the first check is start's)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.lists.digest_check_seconds)
            if stop.is_set():
                return
            await self.run_safely()

    async def run_safely(self) -> None:
        try:
            await self.run_once()
        except Exception:
            log.exception("digest check failed; retrying in %ss",
                          self.config.lists.digest_check_seconds)
