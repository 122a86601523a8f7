"""Recognise delivery status notifications (members' bounce scores: `core.bounce_score`).

Pure: no I/O and no clock.  Callers pass a parsed message.

Detection runs in three layers, most trustworthy first:

1. RFC 3464 ``message/delivery-status`` blocks (`dsn`), read directly so that each
   recipient keeps its Action and Status (flufl.bounce only reports addresses).
2. flufl.bounce's detectors, for the many MTAs that send prose instead of a DSN
   (`bounce_prose`, as is 3).
3. A last, conservative scan of the notification text for an address next to an
   SMTP reply with an enhanced status code ("550 5.1.1"); flufl.bounce knows no
   detector for several current providers (Office 365, OpenSMTPD, Yahoo's plain text).

Layers 2 and 3 read prose, and prose can be a person's: a reply quoting a bounce
("> To: bob@example.net") matches flufl.bounce's patterns as well as the bounce did.
So they run only on mail that looks machine-made (see `looks_like_mta_report`).
"""

from __future__ import annotations

import email
import email.message
import email.policy
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import Header
from email.policy import compat32

from listserv.core.bounce_prose import flufl_failures, looks_like_mta_report, statuses_in_text
from listserv.core.dsn import BouncedRecipient, read_dsn

__all__ = [
    "BounceReport",
    "BouncedRecipient",
    "parse_bounce",
]


@dataclass(frozen=True)
class BounceReport:
    # Empty when the message is certainly a failure report but names no recipient we
    # could read: the caller should neither post it nor score anyone for it.
    recipients: tuple[BouncedRecipient, ...]


def parse_bounce(
    msg: email.message.Message, envelope_sender: str | None = None
) -> BounceReport | None:
    """The recipients a delivery failure reports, or None for any other message.

    ``envelope_sender`` is the SMTP MAIL FROM when known ("" for the null sender that
    MTAs use for bounces). Accepts messages parsed with ``email.policy.compat32`` or
    ``email.policy.default``. Never raises on malformed input; at worst it returns fewer
    recipients.
    """
    compat = _as_compat32(msg)
    if compat is None:
        return None
    dsn = read_dsn(compat)
    if dsn.recipients:
        return BounceReport(dsn.recipients)
    if dsn.success_only:
        # A positive DSN ("delivered", "relayed", "expanded") is not a bounce, and
        # the prose detectors below could misread its text.
        return None
    if not looks_like_mta_report(compat, envelope_sender):
        return None
    text_statuses = statuses_in_text(compat)
    temporary, permanent = flufl_failures(compat)
    if temporary or permanent:
        found = [
            BouncedRecipient(address, True, None, text_statuses.get(address))
            for address in sorted(permanent)
        ] + [
            BouncedRecipient(address, False, None, text_statuses.get(address))
            for address in sorted(temporary - permanent)
        ]
        return BounceReport(tuple(found))
    if text_statuses:
        return BounceReport(
            tuple(
                BouncedRecipient(address, status.startswith("5"), None, status)
                for address, status in text_statuses.items()
            )
        )
    if dsn.is_report:
        return BounceReport(())
    return None


class _StrHeaderMessage(email.message.Message):
    """compat32 message whose header values are always ``str``.

    compat32 returns an ``email.header.Header`` for a header holding raw 8-bit bytes,
    and several flufl.bounce detectors then fail calling ``.lower()`` on it (Mailman's
    own Message class papers over this the same way).
    """

    def get(self, name: str, failobj: object = None) -> object:  # type: ignore[override]
        value = super().get(name, failobj)
        return str(value) if isinstance(value, Header) else value

    def __getitem__(self, name: str) -> object:  # type: ignore[override]
        return self.get(name)

    def get_all(self, name: str, failobj: object = None) -> object:  # type: ignore[override]
        values = super().get_all(name, failobj)
        if values is failobj:
            return failobj
        return [str(value) if isinstance(value, Header) else value for value in values]


# Two ways to write a message back out; each copes with inputs the other rejects.
# compat32's generator re-encodes header values and raises HeaderParseError on one that
# seems to hide another header.  The verbatim policy writes values as received, but the
# generator reads the message through it, so malformed headers meet the stdlib's
# default-policy parser, which raises IndexError, AttributeError or ValueError.
_COMPAT32_8BIT = compat32.clone(max_line_length=0, cte_type="8bit")
_VERBATIM = email.policy.default.clone(refold_source="none", cte_type="8bit")


def _as_compat32(msg: email.message.Message) -> email.message.Message | None:
    """Re-parse ``msg`` as the compat32 message flufl.bounce was written against.

    Reading a default-policy message's headers runs the stdlib's header parser, which
    raises on some malformed addresses from deep inside the detectors; compat32 never
    parses header values.  The copy also returns headers as ``str`` throughout.
    """
    own_policy_first = not isinstance(msg.policy, email.policy.EmailPolicy)
    policies = (_COMPAT32_8BIT, _VERBATIM) if own_policy_first else (_VERBATIM, _COMPAT32_8BIT)
    for policy in policies:
        try:
            data = msg.as_bytes(policy=policy)
        except (HeaderParseError, IndexError, AttributeError, ValueError):
            # ValueError includes UnicodeEncodeError: the generator cannot write back a
            # defective multipart (no usable boundary) whose body holds 8-bit bytes.
            continue
        return email.message_from_bytes(data, _class=_StrHeaderMessage, policy=compat32)
    # Last resort: a compat32 message can still be read as it is (the detectors'
    # trouble with its Header values is caught in flufl_failures).
    return msg if own_policy_first else None


# --- flufl.bounce ----------------------------------------------------------------------


