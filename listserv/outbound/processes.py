"""Several dispatcher processes for one `serve`: signing and composing on every core.

A Python process signs on one core at a time, and a DKIM signature costs about 0.3 ms of
RSA per copy, so a signed fan-out needs several processes to use the machine. Each
dispatcher process runs its own outbox loop on the shared database: the claims and leases
(`outbox.claim`, lease owner host:pid:nonce) already make any number of dispatchers deliver
each copy once. This module starts them, passes on wake-ups, and starts another in place
of one that dies; the new one takes back the dead one's leases at once
(`leases.provably_dead`). `Children`, the supervision of spawned processes, is shared with
the receiver processes of `inbound.handoff`.
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

_STOP_GRACE = 15.0  # a child finishes what it has in flight (a round, a session), then exits
_SHORT_LIFE = 10.0  # seconds: a child that dies younger is restarted after a pause
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
class Child:
    process: BaseProcess
    channel: socket.socket  # our end; the child process holds the other
    started: float = field(default_factory=time.monotonic)


class Children:
    """`count` spawned processes of one `kind` (receiver processes of `inbound.handoff`,
    dispatcher processes here), each holding one end of a channel: one that dies is
    replaced, after a pause when it died young; closing their channels stops them."""

    kind = "child"  # in process names and log lines
    send_buffer: int | None = None  # SO_SNDBUF of our end, when the default is too small

    def __init__(self, config: Config, count: int, main: Callable[..., None]) -> None:
        """`main` is a child's entry point, `main(config, channel, log level, *args())`: a
        module-level function that a spawned interpreter can import (the server's, which
        these modules cannot import without a cycle)."""
        self.config = config
        self.count = count
        self.main = main
        self.children: list[Child] = []
        self.stopping = False  # set at a signal too: a child that ends is not replaced

    @property
    def pids(self) -> list[int]:
        """The child processes' ids, for logs and tests."""
        return [c.process.pid for c in self.children if c.process.pid is not None]

    def args(self) -> tuple[object, ...]:
        """A child's arguments after (config, channel, log level)."""
        return ()

    def watch(self, child: Child) -> None:
        """Start reading what `child` says on its channel, if anything."""

    def start_children(self) -> None:
        self.children = [self._spawn() for _ in range(self.count)]

    def _spawn(self) -> Child:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if self.send_buffer is not None:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        ours.setblocking(False)
        process = multiprocessing.get_context("spawn").Process(
            target=self.main,
            args=(self.config, theirs, logging.getLogger().getEffectiveLevel(), *self.args()),
            name=f"listserv-{self.kind}")
        process.start()
        theirs.close()
        child = Child(process, ours)
        asyncio.get_running_loop().add_reader(process.sentinel, self._ended, child)
        self.watch(child)
        log.info("%s process %d started", self.kind, process.pid)
        return child

    def _ended(self, child: Child) -> None:
        """A child exited: start another in its place, unless we are stopping."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(child.process.sentinel)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(child.channel)
        child.process.join(1.0)  # reaped: its exit code is known
        child.channel.close()
        if self.stopping:
            return
        # One that could not even start (a broken install, no memory) is not restarted in
        # a tight loop; meanwhile the others do its work.
        delay = _RESPAWN_DELAY if time.monotonic() - child.started < _SHORT_LIFE else 0.0
        log.error("%s process %d exited with %s; starting another in %.0f s", self.kind,
                  child.process.pid, child.process.exitcode, delay)
        loop.call_later(delay, self._replace, child)

    def _replace(self, child: Child) -> None:
        if not self.stopping:
            self.children[self.children.index(child)] = self._spawn()

    async def stop_children(self) -> None:
        """Each child finishes what it has in flight (it sees the end of its channel), then
        exits; one that does not within _STOP_GRACE is killed."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        for child in self.children:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(child.process.sentinel)
                loop.remove_reader(child.channel)
            child.channel.close()
        await asyncio.gather(*(asyncio.to_thread(self._join, c.process) for c in self.children))

    def _join(self, process: BaseProcess) -> None:
        process.join(_STOP_GRACE)
        if process.is_alive():
            log.error("%s process %d did not stop; killed", self.kind, process.pid)
            process.kill()
            process.join()


class DispatcherPool(Children):
    """`count` dispatcher processes, woken together; closing their channels stops them."""

    kind = "dispatcher"

    def start(self) -> None:
        self.start_children()

    def wake(self) -> None:
        """Tell every dispatcher that work arrived (a post stored, a digest run opened)."""
        for dispatcher in self.children:
            # A full channel holds a wake-up already; a gone process is being replaced.
            with contextlib.suppress(OSError):
                dispatcher.channel.send(b"w")

    async def stop(self) -> None:
        """Each dispatcher finishes its round in flight, releases its leases, exits."""
        await self.stop_children()


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
