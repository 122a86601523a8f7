"""DKIM: everything we send is signed after its last change, and verifies with our key."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from click.testing import CliRunner
from dkim.crypto import parse_pem_private_key

from listserv.cli import main
from listserv.outbound import keys, signing
from listserv.outbound.notifier import queue_notice
from listserv.store.database import Database
from listserv.store.models import MailingList

from .conftest import DKIM_DOMAIN as DOMAIN
from .conftest import DKIM_SELECTOR as SELECTOR
from .conftest import LIST, Clock, Sink, make_message


def tags(message: bytes) -> dict[str, str]:
    header = message.split(b"\r\n\r\n", 1)[0].decode()
    value = re.search(r"^DKIM-Signature:(.*?)(?=^\S)", header + "\r\nX", re.M | re.S)
    assert value is not None
    text = re.sub(r"\s+", "", value[1])
    return dict(part.split("=", 1) for part in text.split(";") if part)


def test_post_is_signed_and_verifies(signed: Any, als: str, post: Any, drain: Any,
                                     sink: Sink) -> None:
    msg = make_message("Alice Archer <alice@example.org>", "Massage therapy?", "Does it help?",
                       message_id="q1@example.org")
    assert post(msg).code == 250
    drain()
    delivered = [r.content for r in sink.received]
    assert delivered
    for content in delivered:
        assert dkim.verify(content, dnsfunc=signed)
    sig = tags(delivered[0])
    assert sig["d"] == DOMAIN and sig["s"] == SELECTOR and sig["c"] == "relaxed/relaxed"
    covered = set(sig["h"].lower().split(":"))
    assert {"from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
            "list-unsubscribe-post"} <= covered
    # The signature is over what members get, footer included.
    assert b"To leave, write to" in delivered[0]


def test_modified_body_or_header_fails_verification(signed: Any, als: str, post: Any,
                                                    drain: Any, sink: Sink) -> None:
    msg = make_message("alice@example.org", "Hello", "The original words.", message_id="m@x.org")
    assert post(msg).code == 250
    drain()
    content = sink.received[0].content
    assert dkim.verify(content, dnsfunc=signed)
    assert not dkim.verify(content.replace(b"original", b"forged!!"), dnsfunc=signed)
    assert not dkim.verify(content.replace(b"Subject: [", b"Subject: URGENT ["),
                           dnsfunc=signed)
    # A List-Unsubscribe-Post added later is caught too: it was signed as absent.
    added = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" + content
    assert not dkim.verify(added, dnsfunc=signed)


def test_notice_is_signed_and_marked_automatic(signed: Any, als: str, db: Database,
                                               clock: Clock, drain: Any, sink: Sink) -> None:
    payload = (b"From: Living with ALS <living-with-als-owner@lists.example.org>\r\n"
               b"To: bob@example.net\r\nSubject: Welcome\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000"
               b"\r\nMessage-ID: <n1@lists.example.org>\r\n\r\nWelcome to the list.\r\n")
    with db.session() as s:
        ml = s.query(MailingList).one()
        queue_notice(s, kind="welcome", sender="living-with-als-bounces@lists.example.org",
                     recipient="bob@example.net", payload=payload, now=clock(), list_id=ml.id)
    drain()
    (received,) = sink.received
    assert dkim.verify(received.content, dnsfunc=signed)
    notice = received.message
    assert notice["Auto-Submitted"] == "auto-generated"
    assert notice["X-Auto-Response-Suppress"] == "All"
    # The marks were added before signing, so they are covered too.
    assert not dkim.verify(received.content.replace(b"auto-generated", b"no"), dnsfunc=signed)


def test_posts_carry_no_automatic_marks(signed: Any, als: str, post: Any, drain: Any,
                                        sink: Sink) -> None:
    msg = make_message("alice@example.org", "Hi", "A person wrote this.", message_id="h@x.org",
                       headers={"X-Auto-Response-Suppress": "OOF", "Auto-Submitted": "no"})
    assert post(msg).code == 250
    drain()
    delivered = sink.to("dave@example.org")[0]
    assert delivered["Auto-Submitted"] is None
    assert delivered["X-Auto-Response-Suppress"] is None


def test_unsigned_without_dkim_config(als: str, post: Any, drain: Any, sink: Sink) -> None:
    assert post(make_message("alice@example.org", "Hi", "x", message_id="u@x.org")).code == 250
    drain()
    assert b"DKIM-Signature" not in sink.received[0].content


def test_keygen_writes_a_private_key_and_prints_the_record(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "keys" / "k.pem"
    result = cli("dkim", "keygen", "--selector", SELECTOR, "--domain", DOMAIN, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert os.stat(out).st_mode & 0o777 == 0o600
    record = re.search(r"^(\S+) IN TXT \( (.*) \)$", result.output, re.M)
    assert record is not None and record[1] == f"{SELECTOR}._domainkey.{DOMAIN}."
    value = "".join(re.findall(r'"([^"]*)"', record[2]))
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', record[2]))
    pem = out.read_bytes()
    assert b"BEGIN RSA PRIVATE KEY" in pem
    # The printed record verifies what the written key signs.
    message = (b"From: a@lists.example.org\r\nTo: b@example.org\r\nSubject: s\r\n"
               b"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nMessage-ID: <k@x>\r\n\r\nbody\r\n")
    signed = signing.Signer(SELECTOR, DOMAIN, pem).sign(message, 1_795_000_000)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: value.encode())
    assert keys.public_der(pem) in __import__("base64").b64decode(value.split("p=")[1])

    again = cli("dkim", "keygen", "--selector", SELECTOR, "--domain", DOMAIN, "--out", str(out))
    assert again.exit_code == 1
    assert "replace it with --force" in again.output
    assert out.read_bytes() == pem


@pytest.fixture
def key_configured(config_data: dict[str, Any], tmp_path: Path) -> Path:
    """The operator wrote [dkim] first, naming a key file that is not there yet."""
    config_data["dkim"] = {"selector": SELECTOR, "domain": DOMAIN,
                           "private_key_file": "keys/dkim.pem"}
    return tmp_path / "keys" / "dkim.pem"


def test_keygen_writes_the_configured_key_file_and_replaces_it_only_when_forced(
        key_configured: Path, cli: Any, config: Any) -> None:
    path = key_configured
    missing = cli("serve")
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert missing.output == (f"Error: cannot start: dkim.private_key_file {path}: cannot "
                              "read it: No such file or directory\n")

    made = cli("dkim", "keygen", "--selector", SELECTOR, "--domain", DOMAIN)
    assert made.exit_code == 0, made.output
    assert made.output.startswith(f"wrote {path}\n")
    assert os.stat(path).st_mode & 0o777 == 0o600
    first = path.read_bytes()
    assert keys.load_signer(config) is not None  # what `serve` loads now

    again = cli("dkim", "keygen", "--selector", SELECTOR, "--domain", DOMAIN)
    assert again.output == (f"Error: {path} exists; keep it, choose another --out, or "
                            "replace it with --force\n")
    assert path.read_bytes() == first

    forced = cli("dkim", "keygen", "--selector", SELECTOR, "--domain", DOMAIN, "--force")
    assert forced.exit_code == 0, forced.output
    assert path.read_bytes() != first and b"BEGIN RSA PRIVATE KEY" in path.read_bytes()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["dkim.pem"]


@pytest.fixture
def port_taken(config_data: dict[str, Any]) -> Iterator[int]:
    """Another program already listens on the receiver's port."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        config_data["receiver"]["port"] = other.getsockname()[1]
        yield other.getsockname()[1]


def test_serve_names_the_keys_of_an_address_it_cannot_listen_on(port_taken: int,
                                                                cli: Any) -> None:
    result = cli("serve", "--role", "receiver")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(
        f"Error: cannot start: receiver.host '127.0.0.1', receiver.port {port_taken}: ")
    assert result.output.endswith("address already in use\n")


def test_serve_names_the_database_it_cannot_reach_without_its_password(
        tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "postgresql+psycopg://listserv:s3cret@127.0.0.1:1/ls"\n')
    result = CliRunner().invoke(main, ["-c", str(config), "serve", "--role", "dispatcher"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: cannot start: database.url "
                                    "postgresql+psycopg://listserv:***@127.0.0.1:1/ls: ")
    assert "s3cret" not in result.output


@pytest.mark.parametrize("args, error", [
    (["--selector", "a.b", "--domain", DOMAIN], "invalid selector"),
    (["--selector", "s1", "--domain", "not a domain"], "invalid domain"),
])
def test_keygen_refuses_bad_names(cli: Any, args: list[str], error: str) -> None:
    result = cli("dkim", "keygen", *args)
    assert result.exit_code == 1
    assert error in result.output


@pytest.fixture
def bad_key(config_data: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a key")
    config_data["dkim"] = {"selector": SELECTOR, "domain": DOMAIN,
                           "private_key_file": "bad.pem"}


def test_bad_key_stops_serve_with_one_line(bad_key: None, cli: Any) -> None:
    result = cli("serve")
    assert result.exit_code == 1
    assert "bad.pem: not a PEM RSA private key (Private key not found)" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def partial_dkim(config_data: dict[str, Any]) -> None:
    config_data["dkim"] = {"selector": SELECTOR}


def test_partial_dkim_config_is_an_error(partial_dkim: None, cli: Any) -> None:
    result = cli("lists", "list")
    assert result.exit_code == 1
    assert "dkim needs selector, domain and private_key_file" in result.output


def test_config_sections_roundtrip_in_shipped_file() -> None:
    from listserv.config import load

    shipped = Path(__file__).resolve().parents[1] / "config.toml"
    cfg = load(shipped, required=True)
    assert not cfg.dkim.enabled
    assert cfg.web.base_url == ""
    assert LIST.endswith(cfg.lists.domain)


FRONT = "mx.lists.example.org"


@pytest.fixture
def arc_on(signed: Any, config_data: dict[str, Any]) -> Any:
    config_data["dkim"] |= {"arc": True, "arc_authserv_id": FRONT}
    return signed


def post_with_results(post: Any, authserv_id: str) -> None:
    msg = make_message("alice@example.org", "Hi", "Checked upstream.", message_id="a@x.org",
                       headers={"Authentication-Results":
                                f"{authserv_id}; spf=pass smtp.mailfrom=example.org; "
                                "dkim=pass header.d=example.org"})
    assert post(msg).code == 250


def test_arc_seal_records_the_front_mtas_results(arc_on: Any, als: str, post: Any,
                                                 drain: Any, sink: Sink) -> None:
    post_with_results(post, FRONT)
    drain()
    content = next(r.content for r in sink.received if "dave@example.org" in r.rcpt_tos)
    cv, _, reason = dkim.arc_verify(content, dnsfunc=arc_on)
    assert cv == dkim.CV_Pass, reason
    aar = sink.to("dave@example.org")[0]["ARC-Authentication-Results"]
    assert aar.startswith(f"i=1; {FRONT}") and "spf=pass" in aar
    assert dkim.verify(content, dnsfunc=arc_on)
    changed = content.replace(b"Checked", b"Changed")
    assert dkim.arc_verify(changed, dnsfunc=arc_on)[0] == dkim.CV_Fail


def test_no_arc_seal_for_results_of_someone_else(arc_on: Any, als: str, post: Any,
                                                 drain: Any, sink: Sink) -> None:
    post_with_results(post, "evil.example")
    drain()
    (delivered,) = sink.to("dave@example.org")
    assert delivered["ARC-Seal"] is None
    assert dkim.verify(sink.received[0].content, dnsfunc=arc_on)


def test_no_arc_seal_unless_configured(signed: Any, als: str, post: Any, drain: Any,
                                       sink: Sink) -> None:
    post_with_results(post, "lists.example.org")
    drain()
    (delivered,) = sink.to("dave@example.org")
    assert delivered["ARC-Seal"] is None


def test_arc_seal_continues_an_upstream_chain(arc_on: Any, keypair: tuple[bytes, bytes],
                                              als: str, post: Any, drain: Any,
                                              sink: Sink) -> None:
    pem, der = keypair
    # A forwarder upstream sealed the message (i=1) before it reached our front MTA.
    upstream = make_message("alice@example.org", "Hi", "Forwarded to the list.",
                            message_id="fw@x.org",
                            headers={"Authentication-Results":
                                     "forwarder.example; spf=pass smtp.mailfrom=example.org"})
    raw = upstream.as_bytes().replace(b"\n", b"\r\n")
    arc_set = dkim.arc_sign(raw, SELECTOR.encode(), b"forwarder.example", pem,
                            b"forwarder.example")
    sealed = (f"Authentication-Results: {FRONT}; arc=pass; spf=pass smtp.mailfrom=example.org"
              "\r\n").encode() + b"".join(arc_set) + raw
    assert post(sealed, sender="alice@example.org").code == 250
    drain()
    content = next(r.content for r in sink.received if "dave@example.org" in r.rcpt_tos)

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        if name.decode().startswith(f"{SELECTOR}._domainkey."):
            return signing.dns_value(der).encode()
        return None

    cv, results, reason = dkim.arc_verify(content, dnsfunc=lookup)
    assert cv == dkim.CV_Pass, reason
    assert [r["instance"] for r in results] == [2, 1]


@pytest.mark.parametrize("algorithm", ["sha256", "sha1"])
def test_openssl_signs_byte_for_byte_as_dkimpy_does(algorithm: str) -> None:
    # The RSA step runs in OpenSSL for speed; the signature must be the one dkimpy's own
    # arithmetic gives (PKCS#1 v1.5 is deterministic), or receivers would see another one.
    private, _public = keys.generate()
    key = parse_pem_private_key(private)
    digest = hashlib.new(algorithm, b"Does massage therapy help with ALS?")
    assert dkim.RSASSA_PKCS1_v1_5_sign is signing._rsassa_pkcs1_v1_5_sign
    assert (signing._rsassa_pkcs1_v1_5_sign(digest, key)
            == dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest, key))


COPY = (b"From: Alice Archer via Living with ALS <als@lists.example.org>\r\n"
        b"To: als@lists.example.org\r\nCc: carol@example.org\r\n"
        b"Subject: [ALS] Does massage\r\n therapy help?\r\n"
        b"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nMessage-ID: <q1@example.org>\r\n"
        b"List-Id: <als.lists.example.org>\r\n"
        b"List-Unsubscribe: <mailto:als-leave+%s@lists.example.org>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Does it help  with muscle strength? \r\n\r\n\r\n-- \r\nTo leave, write to %s\r\n")


@pytest.mark.parametrize("message", [
    # Two members' copies of one post: only the header differs, the body hash is reused.
    COPY % (b"m1", b"als-leave@lists.example.org"),
    COPY % (b"m2", b"als-leave@lists.example.org"),
    # A personal link in the footer: each body is its own.
    COPY % (b"m3", b"https://lists.example.org/u/m3"),
    # Relayed mail keeps its author's line ends: bare LFs, as dkimpy reads them.
    (COPY % (b"m4", b"x")).replace(b"\r\n", b"\n"),
    b"From: a@lists.example.org\r\nSubject: no body\r\n",
    b"\r\nno header at all\r\n",
], ids=["copy-1", "copy-2", "personal-footer", "bare-lf", "no-body", "no-header"])
def test_each_copy_is_signed_byte_for_byte_as_dkim_sign_does_and_verifies(
        message: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # The body hash is computed once per post and the key parsed once per process; the
    # signature must still be the one dkimpy makes of the same copy at the same second.
    pem, der = keys.generate()
    signer = signing.Signer(SELECTOR, DOMAIN, pem)
    now = 1_795_000_000
    monkeypatch.setattr(dkim, "time", type("Frozen", (), {"time": staticmethod(lambda: now)}))
    names = [h.encode().lower() for h in signing.REQUIRED_HEADERS]
    names += [h for h in dkim.DKIM(message).default_sign_headers() if h.lower() not in names]
    theirs = dkim.sign(message, SELECTOR.encode(), DOMAIN.encode(), pem,
                       canonicalize=signing.CANONICALIZE, include_headers=names) + message
    ours = signer.sign(message, now)
    assert ours == theirs
    if message.startswith(b"From:"):
        assert dkim.verify(ours, dnsfunc=lambda name, timeout=5: signing.dns_value(der).encode())
