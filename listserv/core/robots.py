"""Is this message written by a machine? (RFC 3834 and the de-facto signals around it.)

A mailing list must never post, and never answer, automatic mail: vacation and
out-of-office replies, auto-generated notices, bounces (DSNs/MDNs), and our own
mail coming back to us (a loop). Answering one robot with another is how mail
loops start, and posting one spams every member.

`robot_reason` runs an ordered table of small rules, first match wins (like the
chains of Mailman 3), and returns a short human-readable reason naming the
signal, or None for mail a human wrote. It is pure: no I/O, and it never raises
on missing, duplicated or garbage headers (a rule that trips over garbage simply
does not match).

Policy decisions (see the comment on each rule for the why):

* ``Precedence: list`` counts as a robot, like ``bulk``/``junk`` (Discourse does
  the same): a list must not redistribute another list's traffic.
* A *foreign* ``List-Id``/``List-Unsubscribe`` alone is NOT a robot signal: a
  member who resends or redirects a newsletter, or cross-posts, is a human.
  List-to-list relays are still caught when they carry ``Precedence: list|bulk``.
* ``X-Auto-Response-Suppress`` is a *request* not to auto-answer the message,
  which Outlook/Exchange put on ordinary human mail too (e.g. ``DR, RN, NRN,
  OOF, AutoReply``); only the value ``All``, which Exchange puts on its own
  OOF replies, NDRs and notices, counts.
* Out-of-office subjects match only at the very start of the subject and only
  in the tagged form auto-responders write (``"Automatic reply:"``, ``"Out of
  Office:"``), so that "Re: out of office policy" or "Out of office next week"
  from a person still passes.
"""

from __future__ import annotations

import contextlib
import email.message
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses, parseaddr

from listserv.core.addresses import remembered

__all__ = ["robot_reason"]

HeaderSource = Mapping[str, str] | email.message.Message


@dataclass(frozen=True)
class _Context:
    """Everything a rule may look at, normalised once."""

    headers: _Headers
    envelope_sender: str
    our_list_ids: frozenset[str]
    our_loop_value: str | None


class _Headers:
    """Case-insensitive, never-raising view of the headers of a message or a mapping."""

    def __init__(self, source: HeaderSource) -> None:
        self._source = source
        # A mapping is indexed by lower-cased name once, not scanned for every lookup.
        self._index = None if isinstance(source, email.message.Message) else _index(source)

    def get_all(self, name: str) -> list[str]:
        """Every value of header `name` as text (empty when absent or unreadable)."""
        try:
            if self._index is not None:
                raw: Iterable[object] = self._index.get(name.lower(), [])
            else:
                assert isinstance(self._source, email.message.Message)
                raw = self._source.get_all(name) or []
            return [text for value in raw if (text := _to_text(value)) is not None]
        except Exception:  # garbage headers must never break classification
            return []

    def first(self, name: str) -> str:
        """The first value of header `name`, stripped; "" when absent."""
        values = self.get_all(name)
        return values[0].strip() if values else ""


def _index(source: Mapping[str, object]) -> dict[str, list[object]]:
    """The values of a plain mapping by lower-cased name (keys that are not text ignored)."""
    index: dict[str, list[object]] = {}
    try:
        for key, value in source.items():
            if isinstance(key, str):
                index.setdefault(key.lower(), []).extend(
                    value if isinstance(value, (list, tuple)) else [value])
    except Exception:  # garbage headers must never break classification
        pass
    return index


def _to_text(value: object) -> str | None:
    """A header value as text, decoding RFC 2047 words left raw by compat32 or a mapping."""
    try:
        text = str(value)
    except Exception:
        return None
    if "=?" in text:
        with contextlib.suppress(Exception):  # on failure keep the raw text
            text = str(make_header(decode_header(text)))
    return text


@remembered
def _address(value: str) -> str:
    """The bare address of a header or envelope value: "<>" and "" give ""."""
    try:
        return parseaddr(value)[1].strip()
    except Exception:
        return value.strip().strip("<>").strip()


@remembered
def _addresses(value: str) -> tuple[str, ...]:
    """The addresses in a From value; none when it cannot be read."""
    try:
        return tuple(addr for _, addr in getaddresses([value]) if addr)
    except Exception:
        return ()


def _local_part(address: str) -> str:
    """Lower-cased local part of an address ("MAILER-DAEMON" has no domain and is all local)."""
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


def _keyword(value: str) -> str:
    """The leading token of a structured value: "auto-generated (failure)" -> "auto-generated"."""
    match = re.match(r"\s*([^\s;(]+)", value)
    return match.group(1).lower() if match else ""


def _list_id(value: str) -> str:
    """The identifier of a List-Id value: "Desc <a.b.c>" -> "a.b.c" (RFC 2919)."""
    match = re.search(r"<([^<>]*)>", value)
    return (match.group(1) if match else value).strip().strip("<>").strip().lower()


# Local parts that only MTAs and their administrative robots use as a sender.
_DAEMON_LOCAL = re.compile(
    r"^(mailer[-_]?daemon|postmaster|mail[-_]?delivery[-_]?(system|subsystem))$"
)
# Senders that by their own name cannot be answered, so no human writes from them.
_NOREPLY_LOCAL = re.compile(r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply)([-_+.].*)?$")

# Non-standard headers whose mere presence declares an automatic message (value "no" aside).
_VENDOR_AUTO_HEADERS = (
    "X-Autoreply",  # vacation(1) clones, cPanel, many webmail autoresponders: "X-Autoreply: yes"
    "X-Autorespond",  # autoresponder scripts (also matched by Discourse)
    "X-AutoReply-From",  # Horde/Plesk-style autoresponders
    "X-Autogenerated",  # Yahoo and others: "X-Autogenerated: Reply"
    "X-Mail-Autoreply",  # Oracle/Sun messaging server autoreply
    "X-FC-MachineGenerated",  # FirstClass: "X-FC-MachineGenerated: true"
)
_FALSE_VALUES = frozenset({"no", "false", "0", "off"})

# X-Mailer/User-Agent names of vacation and autoresponder programs (whole words only).
_VACATION_MAILER = re.compile(
    r"\b(vacation|auto[- ]?respon(der|se)|auto[- ]?reply)\b", re.IGNORECASE
)

# Subject tags written by out-of-office responders, anchored at the start and ending in ":".
_OOF_SUBJECT = re.compile(
    r"""^\s*(?:
        auto(?:matic)?[- ]?(?:reply|response)   # Automatic reply: (Exchange), Auto-Reply:
      | auto                                    # AUTO: (Lotus Notes); note: German "Auto" = car
      | out\ of\ (?:the\ )?office              # Out of Office:
      | out\ of\ office\ auto[- ]?reply         # Out of Office AutoReply: (Exchange 2003)
      | vacation\ (?:auto[- ]?)?(?:reply|response|notice|message)  # not bare "Vacation:"
      | abwesenheitsnotiz | automatische\ antwort   # German
      | r[ée]ponse\ automatique                     # French
      | autosvar | automatisk\ svar | fr[åa]nvaro    # Scandinavian
      | automatisch\ antwoord                       # Dutch
      | respuesta\ autom[áa]tica                    # Spanish
      | resposta\ autom[áa]tica                     # Portuguese
      | risposta\ automatica | fuori\ sede          # Italian
      | automaattinen\ vastaus                      # Finnish
      | automatyczna\ odpowied[źz]                  # Polish
      | 自动回复 | 自動回覆 | 自動応答 | 自動返信           # Chinese, Japanese
    )\s*[:：]""",
    re.IGNORECASE | re.VERBOSE,
)


# --- rules: each returns a reason or None -------------------------------------------------


def _empty_envelope(ctx: _Context) -> str | None:
    # RFC 5321 4.5.5: DSNs and other notifications are sent with MAIL FROM:<>.
    if not ctx.envelope_sender.strip().strip("<>").strip():
        return "empty envelope sender (bounce)"
    return None


def _daemon_envelope(ctx: _Context) -> str | None:
    # MTAs that do not use <> still send their bounces from MAILER-DAEMON/postmaster.
    local = _local_part(_address(ctx.envelope_sender))
    if _DAEMON_LOCAL.match(local):
        return f"envelope sender {local} (bounce)"
    return None


def _our_loop_header(ctx: _Context) -> str | None:
    # Our own distribution coming back: we stamp X-BeenThere (Mailman style); X-Loop is the
    # procmail/Sympa equivalent some relays keep, so we honour our value in either.
    if not ctx.our_loop_value:
        return None
    ours = ctx.our_loop_value.strip().strip("<>").strip().lower()
    for name in ("X-BeenThere", "X-Loop"):
        for value in ctx.headers.get_all(name):
            if value.strip().strip("<>").strip().lower() == ours:
                return f"{name}: {value.strip()} (loop)"
    return None


def _our_list_id(ctx: _Context) -> str | None:
    # A List-Id we set ourselves means this is a copy of our own post (RFC 2919).
    if not ctx.our_list_ids:
        return None
    for value in ctx.headers.get_all("List-Id"):
        if _list_id(value) in ctx.our_list_ids:
            return "our own List-Id (loop)"
    return None


def _report(ctx: _Context) -> str | None:
    # RFC 6522 multipart/report carries DSNs (RFC 3464) and MDNs (RFC 8098): never human.
    for value in ctx.headers.get_all("Content-Type"):
        if _keyword(value) == "multipart/report":
            kind = "MDN" if "disposition-notification" in value.lower() else "DSN"
            return f"Content-Type multipart/report ({kind})"
    return None


def _auto_submitted(ctx: _Context) -> str | None:
    # RFC 3834 5: any Auto-Submitted keyword other than "no" marks automatic mail
    # (auto-replied, auto-generated, auto-notified, and future keywords alike).
    # An empty value carries no keyword, so it makes no claim either way.
    for value in ctx.headers.get_all("Auto-Submitted"):
        keyword = _keyword(value)
        if keyword and keyword != "no":
            return f"Auto-Submitted: {keyword}"
    return None


def _precedence(ctx: _Context) -> str | None:
    # De-facto (RFC 3834 2 discourages but acknowledges it): bulk/junk are mass mail, auto_reply
    # is what some responders write. POLICY: "list" counts as a robot too, because it is another
    # list's redistribution and a list must not relay lists (Discourse does the same).
    for value in ctx.headers.get_all("Precedence"):
        keyword = _keyword(value)
        if keyword in ("bulk", "junk", "list", "auto_reply"):
            return f"Precedence: {keyword}"
    return None


def _vendor_auto_header(ctx: _Context) -> str | None:
    # Autoresponders that predate or ignore RFC 3834 mark themselves with X- headers.
    for name in _VENDOR_AUTO_HEADERS:
        for value in ctx.headers.get_all(name):
            if _keyword(value) not in _FALSE_VALUES:
                return f"{name} header"
    return None


def _exchange_rules_loop(ctx: _Context) -> str | None:
    # Exchange stamps this on mail generated or redirected by a mailbox rule, OOF included
    # (seen on real Exchange "Automatic reply:" messages together with XARS: All).
    if any(value.strip() for value in ctx.headers.get_all("X-MS-Exchange-Inbox-Rules-Loop")):
        return "X-MS-Exchange-Inbox-Rules-Loop header (Exchange rule)"
    return None


def _auto_response_suppress_all(ctx: _Context) -> str | None:
    # [MS-OXCMAIL] 2.1.3.2.20: "All" is what Exchange sets on its own OOFs, NDRs and notices.
    # Partial lists ("DR, RN, NRN, OOF, AutoReply") appear on ordinary Outlook mail: ignored.
    for value in ctx.headers.get_all("X-Auto-Response-Suppress"):
        if any(part.strip().lower() == "all" for part in value.split(",")):
            return "X-Auto-Response-Suppress: All"
    return None


def _vacation_mailer(ctx: _Context) -> str | None:
    # Vacation programs often name themselves in X-Mailer (e.g. "vacation", "Autoresponder").
    for name in ("X-Mailer", "User-Agent"):
        for value in ctx.headers.get_all(name):
            if _VACATION_MAILER.search(value):
                return f"{name}: {value.strip()} (vacation program)"
    return None


def _robot_from(ctx: _Context) -> str | None:
    # Bounces relayed with a rewritten envelope still come From: MAILER-DAEMON/postmaster, and
    # a no-reply sender cannot be answered, so no human posts from one.
    for value in ctx.headers.get_all("From"):
        for addr in _addresses(value):
            local = _local_part(addr)
            if _DAEMON_LOCAL.match(local) or _NOREPLY_LOCAL.match(local):
                return f"From: {local} (robot sender)"
    return None


def _oof_subject(ctx: _Context) -> str | None:
    # Last resort for responders that set no header at all: their tagged subject.
    subject = ctx.headers.first("Subject")
    if _OOF_SUBJECT.match(subject):
        return "out-of-office subject"
    return None


Rule = Callable[[_Context], "str | None"]

# First match wins; strongest and most specific signals first so the reason names the best one.
RULES: tuple[tuple[str, Rule], ...] = (
    ("empty-envelope", _empty_envelope),  # MAIL FROM:<> - a bounce or notification
    ("daemon-envelope", _daemon_envelope),  # MAILER-DAEMON/postmaster envelope sender
    ("loop-header", _our_loop_header),  # our X-BeenThere/X-Loop value came back
    ("loop-list-id", _our_list_id),  # our own List-Id came back
    ("report", _report),  # multipart/report: DSN or MDN
    ("auto-submitted", _auto_submitted),  # RFC 3834 Auto-Submitted other than "no"
    ("precedence", _precedence),  # Precedence: bulk|junk|list|auto_reply (list: our policy)
    ("vendor-header", _vendor_auto_header),  # X-Autoreply and friends
    ("exchange-rule", _exchange_rules_loop),  # Exchange mailbox-rule generated mail (OOF)
    ("xars-all", _auto_response_suppress_all),  # X-Auto-Response-Suppress: All (Exchange)
    ("vacation-mailer", _vacation_mailer),  # X-Mailer/User-Agent of a vacation program
    ("robot-from", _robot_from),  # From: MAILER-DAEMON/postmaster/no-reply
    ("oof-subject", _oof_subject),  # "Automatic reply:", "Out of Office:", ... at the start
)


def robot_reason(
    headers: HeaderSource,
    *,
    envelope_sender: str,
    our_list_ids: Collection[str] = (),
    our_loop_value: str | None = None,
) -> str | None:
    """Why this message must be treated as written by a machine, or None if a human wrote it.

    `headers` is a parsed message (any policy) or a plain header mapping; `envelope_sender`
    is the SMTP MAIL FROM ("" or "<>" for a bounce); `our_list_ids` are the List-Id values
    we stamp (with or without angle brackets) and `our_loop_value` our X-BeenThere value,
    both used to recognise our own mail coming back. Never raises.
    """
    try:
        ids = frozenset(_list_id(i) for i in our_list_ids if isinstance(i, str) and i.strip())
    except Exception:
        ids = frozenset()
    ctx = _Context(
        headers=_Headers(headers),
        envelope_sender=envelope_sender if isinstance(envelope_sender, str) else "",
        our_list_ids=ids,
        our_loop_value=our_loop_value if isinstance(our_loop_value, str) else None,
    )
    for _name, rule in RULES:
        try:
            reason = rule(ctx)
        except Exception:  # a rule that chokes on garbage does not match
            continue
        if reason:
            return reason
    return None
