"""Several dispatcher processes for one `serve`: signing and composing on every core.

A Python process signs on one core at a time, and a DKIM signature costs about 0.3 ms of
RSA per copy, so a signed fan-out needs several processes to use the machine. Each
dispatcher process runs its own outbox loop on the shared database: the claims and leases
(`outbox.claim`, lease owner host:pid:nonce) already make any number of dispatchers deliver
each copy once. This module starts them (spawned, like the receiver processes of
`inbound.handoff`), passes on wake-ups, and starts another in place of one that dies; the
new one takes back the dead one's leases at once (`leases.provably_dead`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from listserv.config import Config

log = logging.getLogger(__name__)

_STOP_GRACE = 15.0  # a dispatcher finishes its round in flight and releases its leases
_SHORT_LIFE = 10.0  # seconds: a dispatcher that dies younger is restarted after a pause
_RESPAWN_DELAY = 2.0

MAX_AUTO_DISPATCHERS = 8

DispatcherMain = Callable[[Config, socket.socket, int], None]


def dispatcher_count(config: Config) -> int:
    """Dispatcher processes `serve` runs: `[delivery] dispatchers`, or with 0 one per core
    (at most MAX_AUTO_DISPATCHERS: each opens its own relay connections and database pool)
    when the receivers have processes of their own (`[receiver] workers` above 1), else
    one, in the serving process itself."""
    if config.delivery.dispatchers:
        return config.delivery.dispatchers
    cores = min(os.cpu_count() or 1, MAX_AUTO_DISPATCHERS)
    return cores if config.receiver.workers > 1 else 1


@dataclass
class _Dispatcher:
    process: BaseProcess
    channel: socket.socket  # our end; the dispatcher process holds the other
    started: float = field(default_factory=time.monotonic)


class DispatcherPool:
    """`count` dispatcher processes, woken together; closing their channels stops them."""

    def __init__(self, config: Config, count: int, main: DispatcherMain) -> None:
        """`main` is a dispatcher process's entry point, a module-level function that a
        spawned interpreter can import (the server's, which this module cannot import
        without a cycle)."""
        self.config = config
        self.count = count
        self.main = main
        self._dispatchers: list[_Dispatcher] = []
        self.stopping = False  # set at a signal too: a dispatcher that ends is not replaced

    @property
    def pids(self) -> list[int]:
        """The dispatcher processes' ids, for logs and tests."""
        return [d.process.pid for d in self._dispatchers if d.process.pid is not None]

    def start(self) -> None:
        self._dispatchers = [self._spawn() for _ in range(self.count)]

    def _spawn(self) -> _Dispatcher:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        process = multiprocessing.get_context("spawn").Process(
            target=self.main,
            args=(self.config, theirs, logging.getLogger().getEffectiveLevel()),
            name="listserv-dispatcher")
        process.start()
        theirs.close()
        dispatcher = _Dispatcher(process, ours)
        asyncio.get_running_loop().add_reader(process.sentinel, self._ended, dispatcher)
        log.info("dispatcher process %d started", process.pid)
        return dispatcher

    def wake(self) -> None:
        """Tell every dispatcher that work arrived (a post stored, a digest run opened)."""
        for dispatcher in self._dispatchers:
            # A full channel holds a wake-up already; a gone process is being replaced.
            with contextlib.suppress(OSError):
                dispatcher.channel.send(b"w")

    def _ended(self, dispatcher: _Dispatcher) -> None:
        """A dispatcher process exited: start another in its place, unless we are stopping."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(dispatcher.process.sentinel)
        dispatcher.process.join(1.0)  # reaped: its exit code is known
        dispatcher.channel.close()
        if self.stopping:
            return
        delay = _RESPAWN_DELAY if time.monotonic() - dispatcher.started < _SHORT_LIFE else 0.0
        log.error("dispatcher process %d exited with %s; starting another in %.0f s",
                  dispatcher.process.pid, dispatcher.process.exitcode, delay)
        loop.call_later(delay, self._replace, dispatcher)

    def _replace(self, dispatcher: _Dispatcher) -> None:
        if not self.stopping:
            self._dispatchers[self._dispatchers.index(dispatcher)] = self._spawn()

    async def stop(self) -> None:
        """Each dispatcher finishes its round in flight, releases its leases, exits."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        for dispatcher in self._dispatchers:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(dispatcher.process.sentinel)
            dispatcher.channel.close()  # the dispatcher sees the end of its channel
        await asyncio.gather(*(asyncio.to_thread(self._join, d.process)
                               for d in self._dispatchers))

    @staticmethod
    def _join(process: BaseProcess) -> None:
        process.join(_STOP_GRACE)
        if process.is_alive():
            log.error("dispatcher process %d did not stop; killed", process.pid)
            process.kill()
            process.join()


class Woken:
    """A dispatcher process's end of its channel: a message sets `wake`; the end of the
    channel (the serving process stopped or died) runs `on_close`."""

    def __init__(self, channel: socket.socket, wake: Callable[[], None],
                 on_close: Callable[[], None]) -> None:
        self.channel = channel
        self.wake = wake
        self.on_close = on_close

    def start(self) -> None:
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel, self._read)

    def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.channel)
        self.channel.close()

    def _read(self) -> None:
        try:
            data = self.channel.recv(16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.wake()
            return
        self.stop()
        self.on_close()
