"""Joining, leaving and `-request` commands by email, each message in ONE transaction.

Every change of membership needs a token that only the mailbox concerned received, so
nobody can subscribe or unsubscribe a third party. Answers go to the envelope sender and
look the same whether or not the address is a member, so they reveal nothing about the
list. Robots are never answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.admin import personal
from listserv.config import Config
from listserv.core import commands, compose, digestreply, replytext, robots, tokens
from listserv.core.addresses import Route, identity, role_address, tagged, try_normalize
from listserv.core.message import Malformed, Parsed
from listserv.core.replies import Outcome, combine
from listserv.core.unsubscribe import personal_leave_address
from listserv.inbound import digestreplies, moderation
from listserv.inbound.incoming import Door, receiver_log
from listserv.inbound.incoming import Incoming as Received  # (Incoming here: what a desk reads)
from listserv.outbound.notifier import Notifier, queue_notice
from listserv.store.database import Database, get_list
from listserv.store.models import (
    MODES,
    ListRole,
    MailingList,
    Member,
    MemberEvent,
    Pending,
    Thread,
    ThreadWish,
    UsedToken,
)
from listserv.store.settings import token_secret
from listserv.web import oneclick

log = logging.getLogger(__name__)

# Roles of a list address handled here rather than posted.
ROLES = ("request", "owner", "join", "leave", "confirm")
# The address of one conversation offered to a member whose digest reply was held:
# LIST-confirm+t<thread id>.<token of kind p>@domain.
_CHOSEN_THREAD_RE = re.compile(r"^t(\d{1,18})\.(.+)$")
# The thread addresses of a post's footer: LIST-request+mute-t42@, LIST-request+follow-t42@.
THREAD_WISH = re.compile(r"(mute|follow)-t(\d{1,9})")  # an INTEGER id
# A request waiting for its confirmation, and the kind of token that confirms it (any other
# action is a change of delivery: a mode, a pause, a thread muted or followed).
PENDING_KINDS = {"join": "j", "leave": "l", "export": "x", "forget": "f"}
MODE_COMMANDS = {("digest", "on"): "digest", ("digest", "off"): "each",
                 ("nomail", "on"): "nomail", ("nomail", "off"): "each"}


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
                 ml: MailingList, now: datetime) -> None:
        self.session = session
        self.config = config
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
            until=self.local_day(until), thread=self.thread_subject(thread_id), hour=hour,
        )

    def local_day(self, at: datetime | None) -> str:
        return f"{at.astimezone(ZoneInfo(self.ml.timezone)):%A %-d %B %Y}" if at else ""

    def thread_subject(self, thread_id: int | None) -> str:
        thread = self.session.get(Thread, thread_id) if thread_id is not None else None
        return thread.subject if thread is not None and thread.list_id == self.ml.id else ""

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

    # -- the -request address ----------------------------------------------------------------
    def request(self, msg: Incoming) -> None:
        """Run the commands of a message to `-request` and answer with what each did."""
        found = commands.parse(msg.parsed.subject, msg.parsed.text)
        if not found:
            plain = plain_words(msg.parsed)
            found = [plain] if isinstance(plain, commands.Command) else []
        if not found:
            self.not_a_command(msg)
            return
        results: list[dict[str, str]] = []
        answered_apart = True
        for command in found:
            answer, apart = self.run(command, msg)
            results.append({"command": command.text, "answer": answer})
            answered_apart = answered_apart and apart
        if not answered_apart:
            self.notifier.send("results", "results.txt", msg.sender,
                               in_reply_to=msg.message_id, results=results)

    def run(self, command: commands.Command, msg: Incoming) -> tuple[str, bool]:
        """(what the command did, whether it was answered by a notice of its own)."""
        if command.name == "help":
            self.notifier.send("help", "help.txt", msg.sender, in_reply_to=msg.message_id)
            return "Help was sent in a separate message.", True
        if command.name in ("subscribe", "unsubscribe", "export", "forget"):
            action = {"subscribe": "join", "unsubscribe": "leave"}.get(command.name,
                                                                        command.name)
            self.request_change(action, msg)
            return f"A confirmation request was sent to {msg.sender}.", True
        if command.name == "confirm":
            ok = self.apply_token(command.arg, msg, kinds="jldxf")
            return ("Confirmed." if ok else "Not confirmed."), True
        if command.name == "pause":
            end = commands.pause_end(command.arg, self.now.astimezone(
                ZoneInfo(self.ml.timezone)).date())
            if end is None:
                return f"Not understood as a day from today: {command.arg!r}.", False
            until = datetime.combine(end, time(), ZoneInfo(self.ml.timezone))
            self.request_change("pause", msg, until=until)
        elif command.name == "digest" and command.arg.startswith("at "):
            self.request_change("digest", msg, hour=int(command.arg[3:]))
        elif command.name in ("mute", "follow"):
            self.request_change(command.name, msg, thread_id=int(command.arg))
        else:
            self.request_change(MODE_COMMANDS[(command.name, command.arg)], msg)
        return f"A confirmation request was sent to {msg.sender}.", True

    # -- words that are not commands --------------------------------------------------------
    def not_a_command(self, msg: Incoming) -> None:
        """Never drop a member's words: a reply to a digest goes to its thread (or the member
        is asked which); other words that read as a post are quoted back with how to post."""
        if digestreplies.reply_to_digest(self, msg):
            return
        if digestreply.looks_like_a_post(msg.parsed.text):
            quoted = "\n".join(f"> {line}" if line else ">" for line in
                                replytext.new_text(msg.parsed.text).splitlines())
            self.notifier.send("not-posted", "not_posted.txt", msg.sender,
                               in_reply_to=msg.message_id, subject=msg.parsed.subject,
                               quoted=quoted)
            return
        self.notifier.send("help", "help.txt", msg.sender, in_reply_to=msg.message_id)

    # -- the -owner address --------------------------------------------------------------------
    def forward_to_owners(self, msg: Incoming) -> None:
        """Forward mail to `-owner` From that address with the author in Reply-To, so it
        passes DMARC at the owners' provider whatever the author's domain publishes."""
        owners = self.session.scalars(
            select(ListRole.address).where(ListRole.list_id == self.ml.id,
                                           ListRole.role == "owner")
        ).all()
        if not owners:
            log.warning("mail to %s dropped: the list has no owner", self.ml.address)
        author = msg.parsed.author_address or msg.sender
        name = msg.parsed.author_name if msg.parsed.author_address else msg.name
        payload = compose.render_forward(msg.raw, name, author, f"{self.ml.title} owners",
                                         role_address(self.ml.address, "owner"),
                                         loop=self.ml.address)
        bounces = role_address(self.ml.address, "bounces")
        for owner in owners:
            queue_notice(self.session, kind="owner", sender=bounces, recipient=owner,
                         payload=payload, now=self.now, list_id=self.ml.id)

    def handle(self, role: str, detail: str | None, msg: Incoming) -> None:
        if role == "join":
            self.request_change("join", msg)
        elif role == "leave" and detail:
            self.apply_token(detail, msg, kinds="u")
        elif role == "leave":
            self.request_change("leave", msg)
        elif role == "confirm" and (chosen := _CHOSEN_THREAD_RE.match(detail or "")):
            digestreplies.choose_thread(self, int(chosen[1]), chosen[2], msg)
        elif role == "confirm":
            self.apply_token(detail or "", msg, kinds="jlmdxf")
        elif role == "request" and detail and THREAD_WISH.fullmatch(detail):
            wish, thread_id = THREAD_WISH.fullmatch(detail).groups()  # type: ignore[union-attr]
            self.run(commands.Command(wish, thread_id), msg)
        elif role == "request":
            self.request(msg)
        elif role == "owner":
            self.forward_to_owners(msg)


def plain_words(parsed: Parsed) -> commands.Command | commands.Maybe | None:
    """What a message asks in plain words ("please remove me", "digest"): its whole new
    text, or its Subject when it has none. To `-request` even one word is meant for us."""
    text = replytext.new_text(parsed.text)
    return commands.classify(text if text.strip() else commands.strip_reply_prefix(
        parsed.subject))


def on_plain_command(session: Session, config: Config, templates: Environment,
                     ml: MailingList, parsed: Parsed, raw: bytes, envelope_sender: str,
                     command: commands.Command, now: datetime) -> None:
    """A message to the list that is a command in plain words: not posted, but asked to
    confirm like the same command to `-request`, and recorded for the owners' report."""
    sender = try_normalize(envelope_sender)
    if sender is None:
        log.info("%s: command %r with no envelope sender not answered", ml.address,
                 command.text)
        return
    desk = ListDesk(session, config, templates, ml, now)
    name = parsed.author_name if parsed.author_address == sender else ""
    desk.run(command, Incoming(parsed, raw, sender, name))
    # member 0: a command is no membership event, one-click lookups must not find it.
    session.add(MemberEvent(list_id=ml.id, member_id=0, address=sender,
                            kind=f"cmd-{command.name}" + (f"-{command.arg}" if command.arg
                                                          in ("on", "off") else ""), at=now))


def robot_reason(parsed: Parsed, sender: str, ml: MailingList) -> str | None:
    headers: dict[str, list[str]] = {}
    for name, value in parsed.headers:
        headers.setdefault(name, []).append(value)
    return robots.robot_reason(headers, envelope_sender=sender, our_list_ids=[ml.list_id],
                               our_loop_value=ml.address)


def _apply(session: Session, config: Config, templates: Environment, routes: Sequence[Route],
           raw: bytes, parsed: Parsed, envelope_sender: str,
           now: datetime) -> tuple[Outcome, bool]:
    sender = try_normalize(envelope_sender)
    outcomes = []
    forgotten = False
    for route in routes:
        ml = get_list(session, route.list_address or "")
        if ml is None:
            outcomes.append(Outcome.TEMPORARY_FAILURE)
            continue
        robot = "no envelope sender to answer" if sender is None else \
            robot_reason(parsed, envelope_sender, ml)
        if robot or sender is None:
            log.info("%s mail to %s-%s not answered: %s", ml.address, ml.address, route.role,
                     robot)
            outcomes.append(Outcome.DROPPED)
            continue
        name = parsed.author_name if parsed.author_address == sender else ""
        desk = ListDesk(session, config, templates, ml, now)
        desk.handle(route.role, route.detail, Incoming(parsed, raw, sender, name))
        forgotten = forgotten or desk.forgotten
        outcomes.append(Outcome.COMMAND)
    return combine(outcomes), forgotten


async def receive(door: Door, incoming: Received, routes: Sequence[Route]) -> Outcome:
    """Handle one message to administrative addresses in a worker thread."""
    outcome = await asyncio.to_thread(_receive, door.db, door.config, door.templates, routes,
                                      incoming, door.clock())
    receiver_log.info("%s from=%s to=%s", outcome.value, incoming.mail_from,
                      ",".join(r.list_address or "" for r in routes))
    door.on_post()
    return outcome


def _receive(db: Database, config: Config, templates: Environment, routes: Sequence[Route],
             incoming: Received, now: datetime) -> Outcome:
    """The changes and the notices a message causes commit together, before the receiver
    answers 250."""
    parsed, raw, envelope_sender = incoming.parsed, incoming.raw, incoming.sender
    if isinstance(parsed, Malformed):
        return Outcome.MALFORMED
    with db.session() as session:
        outcome, forgotten = _apply(session, config, templates, routes, raw, parsed,
                                    envelope_sender, now)
    if forgotten:
        personal.compact(db)
    return outcome
