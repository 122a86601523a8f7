"""`listserv serve` as a new user runs it: the shipped config, Maildir delivery, Ctrl-C."""

from __future__ import annotations

import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import LIST, make_message

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free port for a server started later, below the kernel's ephemeral range: a port
    from that range, once closed, may become the source port of any outgoing connection
    (to PostgreSQL, say) before the server binds it (seen: `address already in use`)."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
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


def listserv(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "listserv", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=60)


def wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    """Poll a real subprocess's visible effect; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_shipped_config_delivers_into_maildirs_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    shipped = (ROOT / "config.toml").read_text()
    assert 'transport = "maildir"' in shipped and 'path = "var/mail"' in shipped
    web_port = free_port()
    assert "port = 8080" in shipped
    (tmp_path / "config.toml").write_text(shipped.replace("port = 8025", f"port = {port}")
                                          .replace("port = 8080", f"port = {web_port}"))

    assert listserv(tmp_path, "db", "init").returncode == 0
    assert listserv(tmp_path, "lists", "create", "living-with-als",
                    "--title", "Living with ALS").returncode == 0
    for address in ("alice@example.org", "bob@example.net"):
        assert listserv(tmp_path, "members", "add", LIST, address).returncode == 0

    server = subprocess.Popen([sys.executable, "-m", "listserv", "serve"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: port_open(port), "the receiver to listen")
        question = make_message("alice@example.org", "Massage therapy?", "Does it help?",
                                message_id="q@example.org")
        with smtplib.SMTP("127.0.0.1", port) as client:
            assert client.send_message(question) == {}
        inbox = tmp_path / "var" / "mail" / "bob@example.net" / "new"
        wait_for(lambda: inbox.is_dir() and any(inbox.iterdir()), "delivery to bob's Maildir")
        (delivered,) = inbox.iterdir()
        content = delivered.read_bytes()
        assert b"Message-ID: <q@example.org>" in content
        assert b"Does it help?" in content
        assert not (tmp_path / "var" / "mail" / "alice@example.org").exists()
        # The web archive is served too, members-only until the list says otherwise.
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=10) as page:
            assert page.status == 200 and b"Sign in" in page.read()
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=15)
    assert server.returncode == 0, output
    assert "accepted from=alice@example.org" in output
    assert "Traceback" not in output


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+\[\d+\]: ")


@pytest.mark.slow
def test_client_input_cannot_forge_a_log_line(tmp_path: Path) -> None:
    """A prober puts a carriage return, a Unicode line separator and a terminal escape into
    the addresses and commands it sends: the operator's log keeps one line per record."""
    port = free_port()
    shipped = (ROOT / "config.toml").read_text()
    (tmp_path / "config.toml").write_text(shipped.replace("port = 8025", f"port = {port}")
                                          .replace("port = 8080", f"port = {free_port()}"))
    assert listserv(tmp_path, "db", "init").returncode == 0
    forged = "2026-11-29 09:00:00,000 INFO listserv.inbound.smtp[1]: accepted from=ceo@example.org"
    server = subprocess.Popen([sys.executable, "-m", "listserv", "serve"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: port_open(port), "the receiver to listen")
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo("prober.example")
            client.send(f'MAIL FROM:<"x\r{forged}"@example.org>\r\n'.encode())
            assert client.getreply()[0] == 250
            assert client.rcpt("nobody@lists.example.org")[0] == 550  # logged: from=, to=
            client.rset()
            client.send('MAIL FROM:<"x\u2028INFO forged\x1b[2J"@example.org> SMTPUTF8\r\n'
                        .encode())
            assert client.getreply()[0] == 250
            assert client.rcpt("someone@elsewhere.example")[0] == 550
            client.send(f"NOOP\r{forged}\r\n".encode())  # aiosmtpd warns: unrecognised
            assert client.getreply()[0] == 500
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=15)
    assert server.returncode == 0, output
    text = output.decode("utf-8")
    lines = text.splitlines()  # at CR, LF, U+2028 and every other line boundary
    assert lines and all(LOG_LINE.match(line) for line in lines), lines
    assert f'from="x\\r{forged}"@example.org' in text
    assert 'from="x\\u2028INFO forged\\x1b[2J"@example.org' in text
