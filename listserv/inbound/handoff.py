"""Several receiver processes behind one port: this process accepts each SMTP connection and
hands it to the next receiver process in turn.

A Python process runs on one core at a time, so a busy receiver needs several processes.
SO_REUSEPORT spreads connections by a hash of their addresses, which can put most of a few
long-lived connections (a relay's connection cache, a load test) on one process. Passing each
accepted socket over a Unix socket (SCM_RIGHTS) to the receivers in turn spreads them evenly;
a receiver that dies is started again, and the connections it held are retried by their
clients like any dropped SMTP session. A client that is not a trusted relay always goes to
the same receiver (chosen by a hash of its address, or of its /64), so the per-address session
cap that each receiver counts is the cap of the whole server, not one per process. Back over
the same socket, a receiver tells this process of each stored post, so a dispatcher here
delivers at once instead of at its poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import zlib
from collections.abc import Callable
from typing import Any

from listserv.config import Config
from listserv.core.replies import Outcome, reply
from listserv.inbound.gate import Trusted, client_ip, share
from listserv.outbound.processes import Child, Children

log = logging.getLogger(__name__)

# A receiver process that does not take its connections is skipped; its channel holds this
# many waiting connections at most before the next receiver gets them.
_CHANNEL_BUFFER = 64 * 1024


ReceiverMain = Callable[[Config, socket.socket, int, bool], None]


class Acceptor(Children):
    """Listens on the receiver's port and deals connections to `count` receiver processes."""

    kind = "receiver"
    send_buffer = _CHANNEL_BUFFER

    def __init__(self, config: Config, count: int, on_post: Callable[[], None] | None,
                 receiver_main: ReceiverMain) -> None:
        """`on_post` runs when a receiver has stored a post (None: receivers need not say);
        `receiver_main` is a receiver process's entry point (see `Children`)."""
        super().__init__(config, count, receiver_main)
        self.on_post = on_post
        self.port = config.receiver.port
        self._listener: socket.socket | None = None
        self._next = 0
        self._trusted = Trusted(config.receiver.trusted_relays)
        self._accepting: asyncio.Task[None] | None = None

    def args(self) -> tuple[object, ...]:
        return (self.on_post is not None,)  # whether to report stored posts

    def watch(self, child: Child) -> None:
        asyncio.get_running_loop().add_reader(child.channel, self._posted, child)

    async def start(self) -> None:
        self._listener = socket.create_server(
            (self.config.receiver.host, self.config.receiver.port), backlog=1024,
            reuse_port=self.config.receiver.reuse_port)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self.start_children()
        self._accepting = asyncio.create_task(self._accept())

    def _posted(self, child: Child) -> None:
        try:
            data = child.channel.recv(16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the receiver process is ending; _ended cleans up after it
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(child.channel)
            return
        if self.on_post is not None:
            self.on_post()

    async def _accept(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self._listener)
            except OSError as exc:  # e.g. out of file descriptors: try again shortly
                log.error("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            with conn:
                self._hand(conn, self._first(client_ip(peer)))

    def _first(self, ip: str) -> int:
        """The receiver to offer a connection first: a trusted relay's connections (all the
        mail behind a front MTA) are dealt in turn, anyone else's always to the same one."""
        if ip and not self._trusted(ip):
            return zlib.crc32(share(ip).encode()) % len(self.children)
        first = self._next
        self._next = (self._next + 1) % len(self.children)
        return first

    def _hand(self, conn: socket.socket, first: int) -> None:
        """Give the connection to the receiver `first`, or the next one that takes it (only
        when that one's channel is full or it is being replaced may a client's sessions be
        counted by two receivers); 421 if none does."""
        for turn in range(len(self.children)):
            child = self.children[(first + turn) % len(self.children)]
            try:
                socket.send_fds(child.channel, [b"c"], [conn.fileno()])
                return
            except OSError:  # its channel is full, or the process is gone
                continue
        log.error("no receiver process took a connection; answered 421")
        with contextlib.suppress(OSError):
            conn.send(reply(Outcome.TOO_MANY_SESSIONS).encode() + b"\r\n")

    async def stop(self) -> None:
        """Stop accepting; each receiver finishes as on a signal, then exits."""
        self.stopping = True
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
        await self.stop_children()


class Handed:
    """The receiver's end: takes the connections the acceptor hands over and serves them
    with `factory`; `on_close` runs when the acceptor is gone. With `report_posts`, it tells
    the acceptor's process of stored posts, for its dispatcher."""

    def __init__(self, channel: socket.socket, factory: Callable[[], Any],
                 on_close: Callable[[], None], report_posts: bool) -> None:
        self.channel = channel
        self.factory = factory
        self.on_close = on_close
        self.report_posts = report_posts
        self._report_due = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel, self._take)

    def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.channel)
        self.channel.close()

    def notify_post(self) -> None:
        """Tell the acceptor's process a post was stored (its dispatcher may be waiting):
        once for the posts of one turn of the loop, which a group commit settles together
        (a message per post was 3% of a receiver's loop)."""
        if self.report_posts and not self._report_due:
            self._report_due = True
            asyncio.get_running_loop().call_soon(self._report)

    def _report(self) -> None:
        self._report_due = False
        with contextlib.suppress(OSError):  # a full channel: a wake-up is pending anyway
            self.channel.send(b"p")

    def _take(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.channel, 16, 16)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data and not fds:
            self.stop()
            self.on_close()
            return
        for fd in fds:
            task = loop.create_task(
                loop.connect_accepted_socket(self.factory, socket.socket(fileno=fd)))
            self._tasks.add(task)
            task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not serve a handed connection: %s", task.exception())
