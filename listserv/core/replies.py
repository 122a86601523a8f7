"""Every outcome has a name, and one table maps each to its SMTP reply (RFC 5321, RFC 3463)."""

from __future__ import annotations

from enum import Enum


class Outcome(Enum):
    ACCEPTED = "accepted"
    HELD = "held"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"
    RECIPIENT_OK = "recipient_ok"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    RELAY_DENIED = "relay_denied"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    TOO_BIG = "too_big"
    NO_SENDER = "no_sender"
    MALFORMED = "malformed"
    LINE_TOO_LONG = "line_too_long"
    TEMPORARY_FAILURE = "temporary_failure"
    DISK_FULL = "disk_full"
    TOO_MANY_SESSIONS = "too_many_sessions"
    TOO_MANY_FROM_ADDRESS = "too_many_from_address"
    TRANSACTION_TOO_LONG = "transaction_too_long"
    NO_PROGRESS = "no_progress"
    EVICTED_IDLE = "evicted_idle"
    SHUTTING_DOWN = "shutting_down"
    SENDER_OK = "sender_ok"
    NON_ASCII_ADDRESS = "non_ascii_address"
    UNDECLARED_8BIT = "undeclared_8bit"
    REJECTED = "rejected"
    COMMAND = "command"
    ALIAS_REFUSED = "alias_refused"


REPLIES: dict[Outcome, str] = {
    Outcome.ACCEPTED: "250 2.0.0 Message accepted for delivery",
    # Held reads as accepted: the poster learns of the hold by email, and a stranger forging a
    # member's From must not learn from the SMTP dialogue whether that address is a member.
    Outcome.HELD: "250 2.0.0 Message accepted for delivery",
    Outcome.DUPLICATE: "250 2.0.0 Message already received",
    # Robots and loops are swallowed: answering them is how mail loops start (RFC 3834).
    Outcome.DROPPED: "250 2.0.0 Message accepted",
    Outcome.RECIPIENT_OK: "250 2.1.5 Recipient ok",
    Outcome.UNKNOWN_RECIPIENT: "550 5.1.1 No such list here",
    Outcome.RELAY_DENIED: "550 5.7.1 Relaying denied: we only receive mail for our lists",
    Outcome.TOO_MANY_RECIPIENTS: "452 4.5.3 Too many recipients",
    Outcome.TOO_BIG: "552 5.3.4 Message too big",
    Outcome.NO_SENDER: "550 5.6.0 Message has no usable From address",
    Outcome.MALFORMED: "554 5.6.0 Message refused: malformed or over limits",
    Outcome.LINE_TOO_LONG: "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)",
    Outcome.TEMPORARY_FAILURE: "451 4.3.0 Temporary failure, please try again later",
    Outcome.DISK_FULL: "452 4.3.1 Insufficient system storage, please try again later",
    Outcome.TOO_MANY_SESSIONS: "421 4.7.0 Too many connections, please try again later",
    Outcome.TOO_MANY_FROM_ADDRESS: "421 4.7.0 Too many connections from your address, please"
                                   " try again later",
    Outcome.TRANSACTION_TOO_LONG: "421 4.4.2 Transaction open too long, closing",
    Outcome.NO_PROGRESS: "421 4.7.0 Too many commands without a message, closing",
    Outcome.EVICTED_IDLE: "421 4.4.2 Idle too long while the server is busy, closing",
    Outcome.SHUTTING_DOWN: "421 4.3.2 Server shutting down, please try again later",
    Outcome.SENDER_OK: "250 2.1.0 Sender ok",
    Outcome.NON_ASCII_ADDRESS: "553 5.6.7 Non-ASCII address needs SMTPUTF8 (RFC 6531)",
    Outcome.UNDECLARED_8BIT: "554 5.6.3 8-bit data needs BODY=8BITMIME or SMTPUTF8 (RFC 6152)",
    Outcome.REJECTED: "550 5.7.2 This list accepts posts only from its owners and approved"
                      " posters",
    Outcome.COMMAND: "250 2.0.0 Request received; the answer comes by email",
    # Author aliases relay members' private replies; they are no way in for strangers, whose
    # mail is dropped with the answer a member gets: any other answer tells who is a member.
    Outcome.ALIAS_REFUSED: "250 2.0.0 Message accepted for delivery",
}

# Replies aiosmtpd writes by itself, translated to ours so they carry enhanced status codes.
AIOSMTPD_REPLIES: dict[str, Outcome] = {
    "552 Error: Too much mail data": Outcome.TOO_BIG,
    "552 Error: message size exceeds fixed maximum message size": Outcome.TOO_BIG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": Outcome.LINE_TOO_LONG,
}


def reply(outcome: Outcome, detail: str = "") -> str:
    """The SMTP reply line for an outcome, with an optional human detail appended."""
    text = REPLIES[outcome]
    return f"{text} ({detail})" if detail else text


def translate(status: str) -> str:
    """Our reply for one of aiosmtpd's built-in replies; any other status passes unchanged."""
    outcome = AIOSMTPD_REPLIES.get(status)
    return REPLIES[outcome] if outcome else status


WORST_FIRST = (
    Outcome.DISK_FULL,
    Outcome.TEMPORARY_FAILURE,
    Outcome.MALFORMED,
    Outcome.NO_SENDER,
    Outcome.ALIAS_REFUSED,
    Outcome.UNKNOWN_RECIPIENT,
    Outcome.ACCEPTED,
    Outcome.HELD,
    Outcome.DUPLICATE,
    Outcome.COMMAND,
    Outcome.REJECTED,
    Outcome.DROPPED,
)


def combine(outcomes: list[Outcome]) -> Outcome:
    """One reply for a message sent to several lists: a failure anywhere wins."""
    for candidate in WORST_FIRST:
        if candidate in outcomes:
            return candidate
    return Outcome.ACCEPTED
