"""One list's desk for one person: confirmations by token, and the changes they make.

Every change of membership needs a token that only the mailbox concerned received, so
nobody can subscribe or unsubscribe a third party, and a forged From changes nothing.
Answers go to the envelope sender and look the same whether or not the address is a member
(a thread's subject is named only to a member). The addresses that lead here are read in
`requests`; the conversations of a digest reply in `digestreplies`; moderators' tokens in
`moderation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.admin import personal
from listserv.config import Config
from listserv.core import tokens
from listserv.core.addresses import identity, role_address, tagged
from listserv.core.message import Parsed
from listserv.core.unsubscribe import personal_leave_address
from listserv.inbound import moderation
from listserv.inbound.incoming import Authenticity
from listserv.outbound.notifier import Notifier
from listserv.store.models import MODES, MailingList, Member, Pending, Thread, ThreadWish, UsedToken
from listserv.store.settings import token_secret
from listserv.web import oneclick

# A request waiting for its confirmation, and the kind of token that confirms it (any other
# action is a change of delivery: a mode, a pause, a thread muted or followed).
PENDING_KINDS = {"join": "j", "leave": "l", "export": "x", "forget": "f"}


@dataclass
class Incoming:
    """The message being handled: who to answer and what to thread the answer under."""

    parsed: Parsed
    raw: bytes
    sender: str  # the normalized envelope sender: the only address we ever answer
    name: str

    @property
    def message_id(self) -> str | None:
        return self.parsed.message_id


class ListDesk:
    """What one list does with one message to one of its administrative addresses."""

    def __init__(self, session: Session, config: Config, templates: Environment,
                 ml: MailingList, now: datetime, authenticity: Authenticity) -> None:
        """`authenticity` is the receiver's: words posted on a member's behalf (a digest
        reply) are checked for a forged From as a post to the list is."""
        self.session = session
        self.config = config
        self.authenticity = authenticity
        self.ml = ml
        self.now = now
        self.notifier = Notifier(session, config, templates, ml, now)
        self.secret = token_secret(session, config)
        self.forgotten = False  # someone was forgotten: compact the database after commit

    # -- tokens ------------------------------------------------------------------------------
    def binding(self, *parts: object) -> str:
        return " ".join([self.ml.address, *map(str, parts)])

    def confirm_address(self, token: str) -> str:
        return tagged(role_address(self.ml.address, "confirm"), token)

    def leave_address(self, member: Member) -> str:
        return personal_leave_address(self.secret, self.ml.address, member.id, member.address,
                                      self.now)

    # -- joining and leaving -----------------------------------------------------------------
    def request_change(self, action: str, msg: Incoming, until: datetime | None = None,
                       thread_id: int | None = None, hour: int | None = None) -> bool:
        """Ask the sender's mailbox to confirm a join, a leave or a delivery mode (`action`
        is then the mode); the same whatever the membership, so the answer tells nothing
        about who is on the list, and a forged From changes nothing."""
        if not self.notifier.may_answer(msg.sender):
            return False
        pending = Pending(list_id=self.ml.id, action=action, address=msg.sender,
                          display_name=msg.name, created_at=self.now, until=until,
                          thread_id=thread_id, hour=hour)
        self.session.add(pending)
        self.session.flush()
        kind = PENDING_KINDS.get(action, "d")
        token = tokens.issue(self.secret, kind, pending.id, self.binding(msg.sender), self.now,
                             timedelta(days=self.config.security.confirm_days))
        address = self.confirm_address(token)
        template = "confirm_mode.txt" if kind == "d" else f"confirm_{action}.txt"
        return self.notifier.send(
            "confirm", template, msg.sender, in_reply_to=msg.message_id,
            reply_to=address, confirm_address=address, address=msg.sender, mode=action,
            until=self.local_day(until), thread=self.subject_for(msg.sender, thread_id),
            thread_id=thread_id, hour=hour,
        )

    def local_day(self, at: datetime | None) -> str:
        return f"{at.astimezone(ZoneInfo(self.ml.timezone)):%A %-d %B %Y}" if at else ""

    def thread_subject(self, thread_id: int | None) -> str:
        thread = self.session.get(Thread, thread_id) if thread_id is not None else None
        return thread.subject if thread is not None and thread.list_id == self.ml.id else ""

    def subject_for(self, address: str, thread_id: int | None) -> str:
        """A thread's subject as told to `address`: only a member learns it. Anyone may write
        to `LIST-request+mute-tN@`; to a stranger a thread is its number, whether or not it
        exists, so nobody reads a members-only list's subjects one by one."""
        return self.thread_subject(thread_id) if self.member(address) is not None else ""

    def join(self, address: str, name: str, in_reply_to: str | None) -> None:
        member = self.member(address)
        if member is None:
            member = Member(list_id=self.ml.id, address=address, display_name=name,
                            mode="each", receive_own_posts=False, joined_at=self.now)
            self.session.add(member)
            self.session.flush()
        self.notifier.send("welcome", "welcome.txt", address, in_reply_to=in_reply_to,
                           address=address, leave_address=self.leave_address(member))

    def leave(self, address: str, in_reply_to: str | None) -> None:
        """End a membership confirmed by mail, recorded for the owners' report."""
        member = self.member(address)
        if member is not None:
            oneclick.remove(self.session, member, "unsubscribe", self.now)
        self.notifier.send("goodbye", "goodbye.txt", address, in_reply_to=in_reply_to,
                           address=address)

    def set_mode(self, pending: Pending, in_reply_to: str | None) -> None:
        """Apply a confirmed change of delivery (a mode, a pause, a thread muted or
        followed), and say what it is now."""
        member = self.member(pending.address)
        mode, thread = pending.action, self.thread_subject(pending.thread_id)
        if member is not None and mode == "pause":
            member.paused_until = pending.until
        elif member is not None and mode in ("mute", "follow") and thread:
            wish = self.session.get(ThreadWish, (member.id, pending.thread_id))
            if wish is None:
                self.session.add(ThreadWish(member_id=member.id, thread_id=pending.thread_id,
                                            wish=mode, created_at=self.now))
            else:
                wish.wish = mode
        elif member is not None and mode in MODES:
            member.mode = mode
            member.paused_until = None
            if pending.hour is not None:
                member.digest_hour = pending.hour
        self.notifier.send("results", "mode_changed.txt", pending.address,
                           in_reply_to=in_reply_to, address=pending.address, mode=mode,
                           member=member is not None, until=self.local_day(pending.until),
                           thread=thread, hour=pending.hour)

    def send_data(self, address: str, in_reply_to: str | None) -> None:
        """Mail a person what the list holds about them, confirmed from their mailbox."""
        try:
            data, mbox = personal.export_data_in(self.session, self.ml.address, address,
                                                 self.ml.domain, self.now)
        except personal.PersonalDataError:
            data, mbox = {"address": address, "list": self.ml.address, "membership": None,
                          "posts": []}, b""
        self.notifier.send(
            "data", "data_export.txt", address, in_reply_to=in_reply_to, address=address,
            attachments=(("data.json", "json",
                          json.dumps(data, indent=2, ensure_ascii=False).encode()),
                         ("posts.mbox", "mbox", mbox)))

    def forget(self, address: str) -> None:
        """Forget a person, confirmed from their mailbox: no answer is mailed, which would
        store their address again."""
        try:
            personal.forget_in(self.session.connection(), self.ml.address, address, self.now)
        except personal.PersonalDataError:
            return  # nothing held about them: nothing to do, and nothing told
        self.forgotten = True

    def member(self, address: str) -> Member | None:
        return self.session.scalar(
            select(Member).where(Member.list_id == self.ml.id,
                                 func.lower(Member.address) == identity(address))
        )

    def use(self, token: tokens.Token) -> None:
        """Spend a single-use token; TokenError when it was spent before."""
        if self.session.get(UsedToken, token.key) is not None:
            raise tokens.TokenError("this token was already used")
        self.session.add(UsedToken(key=token.key, used_at=self.now))

    def apply_token(self, text: str, msg: Incoming, kinds: str) -> bool:
        """Act on a token of one of `kinds` (tokens.KINDS); True if it was valid.

        A forged, expired or spent token, or one sent where it does not belong, changes
        nothing and is answered with the reason.
        """
        try:
            peeked = tokens.peek(text)
            if peeked is not None and peeked.kind not in kinds:
                raise tokens.TokenError("this token does not belong at this address")
            self.act_on_token(text, msg)
        except tokens.TokenError as exc:
            self.notifier.send("refused", "token_refused.txt", msg.sender,
                               in_reply_to=msg.message_id, reason=str(exc))
            return False
        return True

    def act_on_token(self, text: str, msg: Incoming) -> None:
        peeked = tokens.peek(text)
        if peeked is None:
            raise tokens.TokenError("this is not a token we issued")
        if peeked.kind in (*PENDING_KINDS.values(), "d"):
            pending = self.session.get(Pending, peeked.ident)
            binding = self.binding(pending.address) if pending else ""
            token = tokens.verify(self.secret, text, binding, self.now)
            if pending is None or pending.list_id != self.ml.id:
                raise tokens.TokenError("this request is unknown to this list")
            self.use(token)
            if token.kind == "j":
                self.join(pending.address, pending.display_name, msg.message_id)
            elif token.kind == "d":
                self.set_mode(pending, msg.message_id)
            elif token.kind == "l":
                self.leave(pending.address, msg.message_id)
            elif token.kind == "x":
                self.send_data(pending.address, msg.message_id)
            else:
                self.forget(pending.address)
        elif peeked.kind == "u":
            member = self.session.get(Member, peeked.ident)
            if member is None or member.list_id != self.ml.id:
                # Signed for a membership that has ended: check it is ours, then say so.
                tokens.verify(self.secret, text, self.binding(msg.sender), self.now)
                raise tokens.TokenError("this leave address belongs to a membership that ended")
            tokens.verify(self.secret, text, self.binding(member.address), self.now)
            self.leave(member.address, msg.message_id)
        else:
            moderation.moderate_by_token(self, text, peeked, msg)
