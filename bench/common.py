"""Shared plumbing for the benchmarks: a scratch config and database, a listserv server
in a subprocess (so its RSS and CPU are its own), sinks, and /proc readings.

Linux only (peak RSS and CPU time come from /proc). Not part of the test suite.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from listserv.config import LimitsConfig
from listserv.core.addresses import Route
from listserv.inbound import groupcommit
from listserv.inbound.incoming import Incoming
from listserv.inbound.posts import PostJob, Result
from listserv.store.database import Database
from listserv.store.models import Delivery, MailingList, Member

PG_URL = os.environ.get("LISTSERV_BENCH_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
LIST = "bench@lists.example.org"
# A list whose only member is the poster (no mail): posts to it cost ingest, no delivery.
QUIET = "quiet@lists.example.org"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ingest(db: Database, route: Route, raw: bytes, sender: str, now: datetime,
           limits: LimitsConfig | None = None) -> Result:
    """Decide and store one post in this thread, in its own transaction, as the receiver's
    group-commit writer does for a lone client."""
    incoming = Incoming(raw, sender, (route.list_address or "",), limits or LimitsConfig())
    (answer,) = groupcommit.commit(db, [PostJob(incoming, [route], now)])
    return answer.result()


def deliveries(engine: Engine, status: str) -> int:
    """Deliveries in `status` ("sent", "failed", ...), read by the benchmark as it waits."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Delivery)
                           .where(Delivery.status == status)) or 0


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, Python {sys.version.split()[0]}"


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a closed port from that range may
    become the source port of another connection before our server binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    for port in random.sample(range(10000, ephemeral), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


@contextmanager
def scratch_database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh empty database: a SQLite file, or a new PostgreSQL database dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    name = f"bench_{os.getpid()}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def write_config(workdir: Path, url: str, receiver_port: int, sink_port: int,
                 **delivery: object) -> Path:
    values = {"transport": "smtp", "host": "127.0.0.1", "port": sink_port, **delivery}
    lines = [
        "[database]", f'url = "{url}"', "",
        "[receiver]", 'host = "127.0.0.1"', f"port = {receiver_port}", "reuse_port = true", "",
        "[delivery]",
        *(f"{k} = {v!r}".replace("'", '"') for k, v in values.items()), "",
        "[lists]", 'domain = "lists.example.org"', "",
    ]
    path = workdir / "config.toml"
    path.write_text("\n".join(lines))
    return path


def seed_list(url: str, members: int, mode: str = "each") -> None:
    """The bench list with `members` members plus the poster, inserted in bulk."""
    db = Database(url)
    db.create_schema()
    now = datetime.now(UTC)
    with db.session() as s:
        for address in (QUIET, LIST):
            ml = MailingList(address=address, title="Bench", digest_hour=7, timezone="UTC",
                             created_at=now)
            s.add(ml)
            s.flush()
            s.add(Member(list_id=ml.id, address="poster@example.org", mode="nomail",
                         joined_at=now))
        list_id = ml.id
    chunk = 20_000
    for start in range(0, members, chunk):
        with db.session() as s:
            s.execute(insert(Member), [
                {"list_id": list_id, "address": f"m{i:07d}@example.net", "display_name": "",
                 "mode": mode, "receive_own_posts": False, "joined_at": now}
                for i in range(start, min(start + chunk, members))
            ])
    db.dispose()


class Proc:
    """A child process with its peak RSS and CPU time read from /proc."""

    def __init__(self, args: list[str], cwd: Path | None = None) -> None:
        # Output goes to a file: a pipe nobody reads fills up and blocks the child.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(args, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                      text=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        """This process and its children (the receiver processes of `serve --workers`)."""
        return [self.pid, *_children(self.pid)]

    def peak_rss_mb(self) -> float:
        """The highest peak RSS of this process and of each child."""
        return max(_peak_rss_mb(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        """CPU time of this process and its children, while they run."""
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> str:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.log.seek(0)
        out = self.log.read()
        self.log.close()
        return out


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found += [int(entry), *_children(int(entry))]
    return found


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def listserv_server(config: Path, role: str, workers: int = 1) -> Proc:
    return Proc([sys.executable, "-m", "listserv", "-c", str(config), "serve", "--role", role,
                 "--workers", str(workers)])


def smtp_source_binary() -> str | None:
    """Postfix's load generator, a C program: its CPU does not crowd the servers measured."""
    found = shutil.which("smtp-source")
    if found is None and Path("/usr/sbin/smtp-source").exists():
        found = "/usr/sbin/smtp-source"
    return found


def smtp_sink_binary() -> str | None:
    found = shutil.which("smtp-sink")
    if found is None and Path("/usr/sbin/smtp-sink").exists():
        found = "/usr/sbin/smtp-sink"
    return found


def fast_sink(port: int) -> Proc:
    """Postfix's smtp-sink when installed (thousands of messages/s), else an aiosmtpd one."""
    binary = smtp_sink_binary()
    if binary:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return Proc([binary, *user, f"127.0.0.1:{port}", "256"])
    return Proc([sys.executable, str(Path(__file__).with_name("nullsmtp.py")), str(port)])


def sink_name() -> str:
    return "postfix smtp-sink" if smtp_sink_binary() else "aiosmtpd (install postfix for smtp-sink)"


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="listserv-bench-")
