"""What every inbound handler gets: the message read once (`Incoming`), what the receiver
holds (`Door`), and the one signature of a handler (`RoleHandler`).

The receiver makes one `Incoming` per SMTP transaction: the bytes, the envelope, and, read
at most once, the parsed message (or its `Malformed` verdict) and the robot verdict for
each list. They are read by the first handler that needs them, in that handler's thread
(the group-commit writer for posts, a worker thread for the others): never on the event
loop, and never again by a second role of the same message, since roles run one after
the other.
"""

from __future__ import annotations

import email
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.policy import compat32
from functools import cached_property
from typing import Protocol

from jinja2 import Environment
from sqlalchemy.orm import Session

from listserv.config import Config, LimitsConfig
from listserv.core import commands, dmarc, robots
from listserv.core.addresses import Route, list_id
from listserv.core.message import Malformed, Parsed, parse
from listserv.core.replies import Outcome
from listserv.inbound.groupcommit import GroupCommitter
from listserv.store.database import Database
from listserv.store.models import Held, MailingList

# The receiver's log lines keep the receiver's name, whichever handler writes them:
# operators (and their log filters) read "listserv.inbound.smtp[pid]: accepted ...".
receiver_log = logging.getLogger("listserv.inbound.smtp")


@dataclass(frozen=True)
class Incoming:
    """One message as the receiver got it, each reading of it made once."""

    raw: bytes
    mail_from: str | None  # MAIL FROM as given; "" for the null sender of bounces
    recipients: tuple[str, ...]  # RCPT TO, as given
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    _robots: dict[str, str | None] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)

    @classmethod
    def parsed_already(cls, raw: bytes, parsed: Parsed, mail_from: str) -> Incoming:
        """A message its handler parsed itself (a digest reply given its thread's subject)."""
        incoming = cls(raw, mail_from, ())
        incoming.__dict__["parsed"] = parsed
        return incoming

    @property
    def sender(self) -> str:
        return self.mail_from or ""

    @property
    def to(self) -> str:
        """The recipients for the log."""
        return ",".join(self.recipients)

    @cached_property
    def parsed(self) -> Parsed | Malformed:
        """The message within the limits, or why it is refused (core.message.parse)."""
        return parse(self.raw, self.limits)

    @cached_property
    def tree(self) -> Message:
        """The whole MIME tree as compat32 reads it, for reports (DSN, ARF); read it only
        once `parsed` found the message well-formed within the limits."""
        return email.message_from_bytes(self.raw, policy=compat32)

    @cached_property
    def _headers(self) -> dict[str, list[str]]:
        parsed = self.parsed
        headers: dict[str, list[str]] = {}
        for name, value in parsed.headers if isinstance(parsed, Parsed) else ():
            headers.setdefault(name, []).append(value)
        return headers

    def robot(self, list_address: str) -> str | None:
        """Why this is a machine's mail to that list (core.robots: our own List-Id or loop
        marker coming back counts), or None when a human wrote it."""
        if list_address not in self._robots:
            self._robots[list_address] = robots.robot_reason(
                self._headers, envelope_sender=self.sender,
                our_list_ids=[list_id(list_address)], our_loop_value=list_address)
        return self._robots[list_address]


@dataclass(frozen=True)
class Authenticity:
    """How a forged From is told: the authserv-id of the front MTA whose
    Authentication-Results we trust, and how to learn whether a domain publishes DMARC
    (a cached DNS lookup; None: no lookups, only an explicit dmarc=fail counts)."""

    authserv_id: str
    policy_of: Callable[[str], str | None] | None = None

    def forged(self, parsed: Parsed) -> str | None:
        """Why the From may be forged, or None (also when the front MTA recorded nothing)."""
        if parsed.author_address is None:
            return None
        domain = parsed.author_address.rpartition("@")[2]
        found = dmarc.checked([v for k, v in parsed.headers
                               if k.lower() == "authentication-results"],
                              self.authserv_id, domain)
        published = None
        if (found is not None and found.dmarc is None and not found.aligned_pass
                and self.policy_of is not None):
            published = self.policy_of(domain)
        return dmarc.forged_reason(found, domain, published)


# Called in the storing transaction when a message is held: (session, list, held row,
# parsed message, envelope sender, now); moderation.on_held notifies poster and moderators.
OnHeld = Callable[[Session, MailingList, Held, Parsed, str, datetime], None]
# Called in the storing transaction when a message to the list is a command in plain words:
# (session, list, parsed message, raw, envelope sender, the command, now).
OnCommand = Callable[[Session, MailingList, Parsed, bytes, str, commands.Command, datetime],
                     None]


class Door(Protocol):
    """What a handler needs of the receiver."""

    db: Database
    config: Config
    templates: Environment
    clock: Callable[[], datetime]
    on_post: Callable[[], None]  # wake the outbox: something was queued
    committer: GroupCommitter

    on_held: OnHeld
    on_command: OnCommand

    def authenticity(self) -> Authenticity: ...


# Every role's handler: (what the receiver holds, the message, the recipients of that role)
# -> the outcome the receiver combines into its one SMTP reply.
RoleHandler = Callable[[Door, Incoming, Sequence[Route]], Awaitable[Outcome]]
