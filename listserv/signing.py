"""DKIM signatures on the final bytes of every message we send.

Signing is the last step before a message leaves, after the last change to it, so the
signature covers exactly what recipients get. Pure: the key comes in as bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

# Signed whether present or not: a header we signed as absent cannot be added later
# by someone replaying the message (RFC 6376 section 8.15).
REQUIRED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
    "List-Unsubscribe-Post", "List-Post", "Reply-To", "Auto-Submitted",
    "X-Auto-Response-Suppress",
)
# Relaxed body canonicalization survives the whitespace changes relays make.
CANONICALIZE = (b"relaxed", b"relaxed")


class SigningKeyError(ValueError):
    """A private key that cannot sign; the message says why."""


@dataclass(frozen=True)
class Signer:
    """Signs with one selector and domain, e.g. `ls2026._domainkey.lists.example.org`."""

    selector: str
    domain: str
    private_key: bytes
    # authserv-id of the front MTA whose Authentication-Results an ARC seal records;
    # empty: no ARC.
    arc_authserv_id: str = ""

    def __post_init__(self) -> None:
        try:
            parse_pem_private_key(self.private_key)
        except (UnparsableKeyError, ValueError, IndexError) as exc:
            why = (str(exc).splitlines() or ["unreadable"])[0]
            raise SigningKeyError(f"not a PEM RSA private key ({why})") from exc

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front (after an ARC set, when
        ARC is on and our front MTA left its Authentication-Results)."""
        if self.arc_authserv_id:
            message = self.seal(message)
        names = [h.encode().lower() for h in REQUIRED_HEADERS]
        # dkimpy's choice for the others present (Cc, Reply-To, MIME headers...).
        names += [h for h in dkim.DKIM(message).default_sign_headers()
                  if h.lower() not in names]
        header = dkim.sign(
            message, self.selector.encode(), self.domain.encode(), self.private_key,
            canonicalize=CANONICALIZE, include_headers=names,
        )
        return header + message


    def seal(self, message: bytes) -> bytes:
        """The message with the next ARC set in front; unchanged when the front MTA's
        Authentication-Results are absent or the chain cannot be continued."""
        try:
            arc_set = dkim.arc_sign(
                message, self.selector.encode(), self.domain.encode(), self.private_key,
                self.arc_authserv_id.encode(),
            )
        except dkim.ParameterError:
            return message
        return b"".join(arc_set) + message


def dns_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}."


def dns_value(public_key_der: bytes) -> str:
    """The TXT value publishing a public key (SubjectPublicKeyInfo, DER)."""
    return f"v=DKIM1; k=rsa; p={base64.b64encode(public_key_der).decode()}"


def dns_record(selector: str, domain: str, public_key_der: bytes) -> str:
    """A zone-file line; the value is split into strings of at most 255 characters."""
    value = dns_value(public_key_der)
    chunks = " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))
    return f"{dns_name(selector, domain)} IN TXT ( {chunks} )"
