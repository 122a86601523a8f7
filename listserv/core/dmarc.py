"""DMARC policies from DNS TXT records, as values: may an author's From pass through?

A list re-sends a member's mail from its own servers, so the author's domain's DMARC
check fails at the recipient. Under `p=none` nothing is rejected for that, so such
authors may keep their From. Pure: the caller looks up the records.

Also what our front MTA found when the message came in (its Authentication-Results,
RFC 8601): a From that fails the author domain's DMARC is not the member it names.
"""

from __future__ import annotations

from dataclasses import dataclass

import authres

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


@dataclass(frozen=True)
class Checked:
    """What the front MTA recorded about the author's domain."""

    # Its dmarc= result for that domain ("pass", "fail", "none", ...), when it checked.
    dmarc: str | None
    # An SPF or DKIM pass for that domain or a domain under it (strict enough: without the
    # public suffix list, a sibling subdomain counts as unaligned, which holds, never posts).
    aligned_pass: bool


# authres parses about 4 ms per KB and recurses on nested comments: only fields that name
# our authserv-id first, of a size a real MTA writes, and a few of them, are parsed.
MAX_RESULTS_BYTES = 4096
MAX_RESULTS_FIELDS = 8


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2].strip().rstrip(".").lower()


def _aligned(domain: str, author_domain: str) -> bool:
    return domain == author_domain or domain.endswith("." + author_domain)


def checked(values: list[str], authserv_id: str, author_domain: str) -> Checked | None:
    """What the Authentication-Results fields with our front MTA's authserv-id say about
    the author's domain; None when there is none (no front MTA that authenticates). Fields
    from anyone else are ignored: a sender can write any header."""
    author_domain = _domain_of(author_domain)
    dmarc_results: list[str] = []
    aligned_pass = False
    found = False
    ours = [v for v in values if len(v) <= MAX_RESULTS_BYTES
            and v.split(";", 1)[0].lower().split()[:1] == [authserv_id.lower()]]
    for value in ours[:MAX_RESULTS_FIELDS]:
        try:
            header = authres.AuthenticationResultsHeader.parse_value(value)
        except (authres.AuthResError, RecursionError):  # it recurses on nested comments
            continue
        found = True
        for result in header.results:
            method, outcome = str(result.method).lower(), str(result.result).lower()
            props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
            if method == "dmarc":
                if _domain_of(props.get("header.from", author_domain)) == author_domain:
                    dmarc_results.append(outcome)
            elif outcome == "pass" and method in ("spf", "dkim"):
                domain = props.get("smtp.mailfrom") if method == "spf" else (
                    props.get("header.d") or props.get("header.i"))
                aligned_pass |= domain is not None and _aligned(_domain_of(domain),
                                                                author_domain)
    if not found:
        return None
    verdict = "fail" if "fail" in dmarc_results else (dmarc_results[0] if dmarc_results
                                                      else None)
    return Checked(verdict, aligned_pass)


def forged_reason(found: Checked | None, author_domain: str,
                  published: str | None = None) -> str | None:
    """Why a post's From cannot be trusted to be its author, or None: our front MTA says
    DMARC fails for the author's domain, or it saw no aligned SPF or DKIM pass while the
    domain publishes a DMARC policy (`published`, looked up by the caller)."""
    if found is None:
        return None
    if found.dmarc == "fail":
        return f"DMARC fails for {author_domain}: the From may be forged"
    if found.dmarc is None and not found.aligned_pass and published is not None:
        return (f"no SPF or DKIM pass aligned with {author_domain}, which publishes"
                f" DMARC p={published}: the From may be forged")
    return None


def sender_verified(values: list[str], authserv_id: str, sender: str) -> bool:
    """Whether our front MTA vouches for an envelope sender (a DMARC pass, or an SPF or
    DKIM pass aligned with its domain), so that answering it cannot be backscatter to an
    innocent address; False when the front MTA recorded nothing."""
    found = checked(values, authserv_id, _domain_of(sender))
    return found is not None and (found.dmarc == "pass" or found.aligned_pass)
