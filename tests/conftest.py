"""Shared fixtures: a settable clock, a scripted SMTP sink, a receiver on an ephemeral port,
an outbox driven until drained, an SMTP client helper and the CLI.

Everything talks over real sockets to real servers and a real database file (PostgreSQL
when LISTSERV_TEST_DATABASE_URL names one).
"""

from __future__ import annotations

import asyncio
import email
import smtplib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from listserv.cli import main
from listserv.config import Config, parse
from listserv.outbound import keys, signing
from listserv.outbound.outbox import Outbox
from listserv.outbound.transports import SmtpRelay
from listserv.server import Server
from listserv.store.database import Database
from listserv.store.models import Held
from listserv.templating import environment
from tests.pg import BACKENDS, pg_schema, postgres_url_or_skip

T = TypeVar("T")

LIST = "living-with-als@lists.example.org"


class Clock:
    """The time every component sees; tests move it instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class LoopThread:
    """The event loop `serve` runs (uvloop), in a background thread, so servers run while
    the test talks to them."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Sink:
    """A real SMTP peer whose replies tests script per recipient and for DATA."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    # While True the relay is "down": every connection is closed before the greeting.
    down: bool = False
    mail_replies: list[str] = field(default_factory=list)
    # Seconds the sink waits before answering DATA (a slow or hung relay).
    data_delay: float = 0.0
    # Close the connection after reading DATA instead of answering, this many times.
    drop_after_data: int = 0

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        status = self.rcpt_replies.get(address, "250 2.1.5 OK")
        if status.startswith("250"):
            envelope.rcpt_tos.append(address)
        return status

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.drop_after_data:
            self.drop_after_data -= 1
            assert server.transport is not None
            server.transport.close()
            return "250 2.0.0 never heard"
        if self.data_replies:
            status = self.data_replies.pop(0)
            if not status.startswith("250"):
                return status
        self.received.append(
            Received(envelope.mail_from or "", list(envelope.rcpt_tos),
                     bytes(envelope.original_content or b""))
        )
        return "250 2.0.0 queued"

    def to(self, address: str) -> list[Message]:
        """Messages delivered to one recipient, oldest first."""
        return [r.message for r in self.received if address in r.rcpt_tos]

    def recipients(self) -> list[str]:
        return [rcpt for r in self.received for rcpt in r.rcpt_tos]


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def sink(loop_thread: LoopThread) -> Iterator[Sink]:
    s = Sink()

    class SinkSMTP(SMTP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if s.down:
                transport.close()
                return
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            if self.session is not None:  # not for connections refused while down
                super().connection_lost(error)

    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            lambda: SinkSMTP(s, decode_data=False, enable_SMTPUTF8=True), "127.0.0.1", 0
        )

    server = loop_thread.run(start())
    s.port = server.sockets[0].getsockname()[1]
    yield s
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test runs on SQLite, and on PostgreSQL too when database behaviour matters to it
    (marked `both_databases`: locking, constraints, SQL that differs by dialect)."""
    if "database_url" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker("both_databases") is not None
        metafunc.parametrize("database_url", BACKENDS if marked else BACKENDS[:1],
                             indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The one place that picks the test database: a SQLite file, or a fresh PostgreSQL
    schema per test (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'listserv.db'}"
        return
    with pg_schema(postgres_url_or_skip()) as url:
        yield url


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    """For faults injected through the SQLite file itself (page limits, moving the file)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("this fault is injected through the SQLite file")


@pytest.fixture
def config_data(database_url: str, sink: Sink) -> dict[str, Any]:
    """The config as TOML data; tests may change it before `config` is built."""
    return {
        "database": {"url": database_url, "busy_timeout": 1.0},
        "receiver": {"host": "127.0.0.1", "port": 0, "timeout": 10.0},
        "delivery": {"transport": "smtp", "host": "127.0.0.1", "port": sink.port,
                     "timeout": 10.0},
        "lists": {"domain": "lists.example.org"},
        "web": {"host": "127.0.0.1", "port": 0},
    }


@pytest.fixture
def config(config_data: dict[str, Any], tmp_path: Path) -> Config:
    return parse(config_data, tmp_path)


@pytest.fixture
def config_file(config_data: dict[str, Any], tmp_path: Path) -> Path:
    def toml_value(v: Any) -> str:
        return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    lines = []
    for section, values in config_data.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def two_per_address(config_data: dict[str, Any]) -> None:
    """One client address may hold two SMTP sessions at once."""
    config_data["receiver"]["max_sessions_per_ip"] = 2


@pytest.fixture
def db(config: Config) -> Iterator[Database]:
    database = Database(config.database_url, config.database.busy_timeout)
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture
def receiver(config: Config, clock: Clock, loop_thread: LoopThread,
             db: Database) -> Iterator[Server]:
    """The SMTP receiver on an ephemeral port (the tests drive the outbox themselves)."""
    server = Server(config, clock, roles=("receiver",))
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


@pytest.fixture
def web_server(config: Config, clock: Clock, loop_thread: LoopThread,
               db: Database) -> Iterator[Server]:
    """The web role (archive, sign-in, one-click unsubscribe) on an ephemeral port."""
    server = Server(config, clock, roles=("web",))
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


@pytest.fixture
def outbox(config: Config, clock: Clock, db: Database,
           loop_thread: LoopThread) -> Iterator[Outbox]:
    relay = SmtpRelay(config.delivery.host, config.delivery.port, 2, config.delivery.timeout)
    yield Outbox(db, config, relay, environment(config.base_dir), clock, rng=lambda: 0.5)
    loop_thread.run(relay.close())


@pytest.fixture
def scheduler(config: Config, clock: Clock, loop_thread: LoopThread, db: Database) -> Any:
    """Start a server with only the scheduler role (one check at start), then stop it."""

    def start_and_stop() -> None:
        server = Server(config, clock, roles=("scheduler",))
        loop_thread.run(server.start())
        loop_thread.run(server.stop())

    return start_and_stop


@pytest.fixture
def drain(outbox: Outbox, loop_thread: LoopThread) -> Any:
    """Run the outbox until nothing is due; returns how many deliveries it attempted."""

    def run() -> int:
        total = 0
        while attempted := loop_thread.run(outbox.run_once()):
            total += attempted
        return total

    return run


@dataclass
class SmtpReply:
    rcpt: list[tuple[int, str]]
    data: tuple[int, str] | None

    @property
    def code(self) -> int:
        return self.data[0] if self.data else self.rcpt[-1][0]

    @property
    def text(self) -> str:
        return self.data[1] if self.data else self.rcpt[-1][1]


def smtp_send(port: int, sender: str, recipients: list[str], content: bytes) -> SmtpReply:
    """One SMTP transaction over a real socket, returning every reply instead of raising."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.net")
        # As an MTA does: 8-bit content is declared (RFC 6152), UTF-8 addresses too (RFC 6531).
        options = [] if content.isascii() else ["BODY=8BITMIME"]
        if not (sender + "".join(recipients)).isascii():
            options.append("SMTPUTF8")
        code, text = client.mail(sender, options)
        assert code == 250, text
        rcpt = []
        for r in recipients:
            c, t = client.rcpt(r)
            rcpt.append((c, t.decode()))
        if not any(c == 250 for c, _ in rcpt):
            return SmtpReply(rcpt, None)
        client.putcmd("data")
        code, text = client.getreply()
        if code != 354:
            return SmtpReply(rcpt, (code, text.decode()))
        client.send(smtplib.quotedata(content.decode("utf-8", "surrogateescape"))
                    .encode("utf-8", "surrogateescape") + b"\r\n.\r\n")
        code, text = client.getreply()
        return SmtpReply(rcpt, (code, text.decode()))


def count(db: Database, model: type[Any], *where: Any) -> int:
    """How many rows of `model` are stored (matching `where`)."""
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def is_held(db: Database, message_id: str) -> bool:
    """Whether the message waits for a moderator. Only the hold queue tells: the SMTP reply to a
    held post is the one an accepted post gets, so it reveals nobody's membership."""
    return count(db, Held, Held.message_id == message_id) == 1


def make_message(
    sender: str, subject: str, body: str, *, to: str = LIST, message_id: str | None = None,
    in_reply_to: str | None = None, references: str | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Fri, 27 Nov 2026 09:00:00 +0000"
    if message_id:
        msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg


@pytest.fixture
def post(receiver: Server) -> Any:
    """Send a message to the receiver: post(msg, to=[...], sender=...) -> SmtpReply."""

    def send(msg: EmailMessage | bytes, to: list[str] | None = None,
             sender: str | None = None) -> SmtpReply:
        content = msg if isinstance(msg, bytes) else msg.as_bytes()
        if sender is None:
            sender = "" if isinstance(msg, bytes) else email.utils.parseaddr(msg["From"])[1]
        return smtp_send(receiver.port, sender, to or [LIST], content)

    return send


@pytest.fixture
def cli(config_file: Path) -> Any:
    """Run `listserv -c CONFIG ARGS...` in-process and return click's Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, ["-c", str(config_file), *args], input=input)

    return invoke


@pytest.fixture
def als(cli: Any, db: Database) -> str:
    """The seed list: Alice, Bob and Dave read each post; Carol a digest; Erin nothing."""
    assert cli("lists", "create", "living-with-als", "--title", "Living with ALS",
               "--subject-prefix", "[Living with ALS]").exit_code == 0
    for address, name, mode in [
        ("alice@example.org", "Alice Archer", "each"),
        ("bob@example.net", "Bob Baker", "each"),
        ("carol@example.com", "Carol Cole", "digest"),
        ("dave@example.org", "Dave Dunn", "each"),
        ("erin@example.org", "Erin Ellis", "nomail"),
    ]:
        result = cli("members", "add", LIST, address, "--name", name, "--mode", mode)
        assert result.exit_code == 0, result.output
    return LIST


# -- deliverability ------------------------------------------------------------------------
DKIM_SELECTOR = "ls2026"
DKIM_DOMAIN = "lists.example.org"


@pytest.fixture(scope="session")
def keypair() -> tuple[bytes, bytes]:
    return keys.generate()


def dns_for(public_der: bytes) -> Any:
    """A key lookup for dkimpy that answers from the test's key instead of DNS."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        if name.decode() == signing.dns_name(DKIM_SELECTOR, DKIM_DOMAIN):
            return signing.dns_value(public_der).encode()
        return None

    return lookup


@pytest.fixture
def signed(config_data: dict[str, Any], tmp_path: Path, keypair: tuple[bytes, bytes]) -> Any:
    """Turn DKIM on for this test; returns the DNS lookup that verifies our signatures."""
    pem, der = keypair
    (tmp_path / "dkim.pem").write_bytes(pem)
    config_data["dkim"] = {"selector": DKIM_SELECTOR, "domain": DKIM_DOMAIN,
                           "private_key_file": "dkim.pem"}
    return dns_for(der)
