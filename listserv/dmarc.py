"""DMARC policies from DNS TXT records, as values: may an author's From pass through?

A list re-sends a member's mail from its own servers, so the author's domain's DMARC
check fails at the recipient. Under `p=none` nothing is rejected for that, so such
authors may keep their From. Pure: the caller looks up the records.
"""

from __future__ import annotations

POLICIES = ("none", "quarantine", "reject")


def parse_record(records: list[str]) -> dict[str, str] | None:
    """The tags of the single DMARC record among TXT strings (RFC 7489 6.6.3), or None."""
    found = [r for r in records if r.strip().lower().startswith("v=dmarc1")]
    if len(found) != 1:
        return None
    tags = {}
    for part in found[0].split(";"):
        key, eq, value = part.partition("=")
        if eq:
            tags[key.strip().lower()] = value.strip().lower()
    return tags


def organizational(domain: str) -> str:
    """An approximation of the organizational domain (the last two labels); without the
    public suffix list it errs towards asking about a domain that has no record."""
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def policy(domain_records: list[str], org_records: list[str] | None) -> str | None:
    """The policy that applies to a From domain: its own record's p=, else the
    organizational domain's sp= (or p=); None when there is no valid record."""
    own = parse_record(domain_records)
    if own is not None:
        value = own.get("p")
    else:
        org = parse_record(org_records or [])
        value = (org.get("sp") or org.get("p")) if org is not None else None
    return value if value in POLICIES else None
