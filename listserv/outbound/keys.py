"""DKIM key files: generate a key pair and load the signer the config names."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from listserv.config import Config
from listserv.outbound.signing import Signer, SigningKeyError

KEY_BITS = 2048


def generate() -> tuple[bytes, bytes]:
    """(private key PEM, public key DER) of a new RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, der


def write_private(path: Path, pem: bytes, *, replace: bool = False) -> None:
    """Write a key readable by its owner only. An existing key is kept (FileExistsError)
    unless `replace`: then the new one takes its place whole, never half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".new") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    if replace:
        os.replace(target, path)


def public_der(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signer(config: Config) -> Signer | None:
    """The signer `[dkim]` configures, or None when DKIM is off; SigningKeyError when the
    key file is missing or unusable, so `serve` stops with one line naming it."""
    dkim = config.dkim
    if not dkim.enabled:
        return None
    authserv_id = (dkim.arc_authserv_id or config.lists.domain) if dkim.arc else ""
    try:
        pem = config.dkim_key_path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read it: {exc.strerror}") from exc
    return Signer(dkim.selector, dkim.domain, pem, authserv_id)
