"""DKIM key files: generate a key pair and load the signer the config names."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .config import Config
from .signing import Signer

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


def write_private(path: Path, pem: bytes) -> None:
    """Write a key readable by its owner only; never overwrite an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def public_der(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signer(config: Config) -> Signer | None:
    """The signer `[dkim]` configures, or None when DKIM is off; OSError or ValueError
    when the key file is missing or unusable, so `serve` stops with one line."""
    dkim = config.dkim
    if not dkim.enabled:
        return None
    authserv_id = (dkim.arc_authserv_id or config.lists.domain) if dkim.arc else ""
    return Signer(dkim.selector, dkim.domain, config.dkim_key_path.read_bytes(), authserv_id)
