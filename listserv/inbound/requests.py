"""The administrative addresses of a list by email: `-request` commands, `-join`, `-leave`,
`-confirm` and `-owner`, each message in ONE transaction.

What a confirmed request changes, and every token, is the `desk`'s. Robots are never
answered.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from datetime import datetime, time
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy.orm import Session

from listserv.admin import personal
from listserv.config import Config
from listserv.core import commands, compose, digestreply, replytext
from listserv.core.addresses import Route, role_address, try_normalize
from listserv.core.message import Malformed, Parsed
from listserv.core.replies import Outcome, combine
from listserv.inbound import digestreplies
from listserv.inbound.desk import Incoming, ListDesk
from listserv.inbound.incoming import Authenticity, Door, receiver_log
from listserv.inbound.incoming import Incoming as Received  # (Incoming here: what a desk reads)
from listserv.outbound.notifier import queue_notice
from listserv.store import roles
from listserv.store.database import Database, get_list
from listserv.store.models import MailingList, MemberEvent

log = logging.getLogger(__name__)

# Roles of a list address handled here rather than posted.
ROLES = ("request", "owner", "join", "leave", "confirm")
# The address of one conversation offered to a member whose digest reply was held:
# LIST-confirm+t<thread id>.<token of kind p>@domain.
_CHOSEN_THREAD_RE = re.compile(r"^t(\d{1,18})\.(.+)$")
# The thread addresses of a post's footer: LIST-request+mute-t42@, LIST-request+follow-t42@.
THREAD_WISH = re.compile(r"(mute|follow)-t(\d{1,9})")  # an INTEGER id
MODE_COMMANDS = {("digest", "on"): "digest", ("digest", "off"): "each",
                 ("nomail", "on"): "nomail", ("nomail", "off"): "each"}


# -- the -request address ----------------------------------------------------------------------
def request(desk: ListDesk, msg: Incoming) -> None:
    """Run the commands of a message to `-request` and answer with what each did."""
    found = commands.parse(msg.parsed.subject, msg.parsed.text)
    if not found:
        plain = plain_words(msg.parsed)
        found = [plain] if isinstance(plain, commands.Command) else []
    if not found:
        not_a_command(desk, msg)
        return
    results: list[dict[str, str]] = []
    answered_apart = True
    for command in found:
        answer, apart = run(desk, command, msg)
        results.append({"command": command.text, "answer": answer})
        answered_apart = answered_apart and apart
    if not answered_apart:
        desk.notifier.send("results", "results.txt", msg.sender,
                           in_reply_to=msg.message_id, results=results)


def run(desk: ListDesk, command: commands.Command, msg: Incoming) -> tuple[str, bool]:
    """(what the command did, whether it was answered by a notice of its own)."""
    if command.name == "help":
        desk.notifier.send("help", "help.txt", msg.sender, in_reply_to=msg.message_id)
        return "Help was sent in a separate message.", True
    if command.name in ("subscribe", "unsubscribe", "export", "forget"):
        action = {"subscribe": "join", "unsubscribe": "leave"}.get(command.name,
                                                                    command.name)
        desk.request_change(action, msg)
        return f"A confirmation request was sent to {msg.sender}.", True
    if command.name == "confirm":
        ok = desk.apply_token(command.arg, msg, kinds="jldxf")
        return ("Confirmed." if ok else "Not confirmed."), True
    if command.name == "pause":
        end = commands.pause_end(command.arg, desk.now.astimezone(
            ZoneInfo(desk.ml.timezone)).date())
        if end is None:
            return f"Not understood as a day from today: {command.arg!r}.", False
        until = datetime.combine(end, time(), ZoneInfo(desk.ml.timezone))
        desk.request_change("pause", msg, until=until)
    elif command.name == "digest" and command.arg.startswith("at "):
        desk.request_change("digest", msg, hour=int(command.arg[3:]))
    elif command.name in ("mute", "follow"):
        desk.request_change(command.name, msg, thread_id=int(command.arg))
    else:
        desk.request_change(MODE_COMMANDS[(command.name, command.arg)], msg)
    return f"A confirmation request was sent to {msg.sender}.", True


# -- words that are not commands ---------------------------------------------------------------
def not_a_command(desk: ListDesk, msg: Incoming) -> None:
    """Never drop a member's words: a reply to a digest goes to its thread (or the member
    is asked which); other words that read as a post are quoted back with how to post."""
    if digestreplies.reply_to_digest(desk, msg):
        return
    if digestreply.looks_like_a_post(msg.parsed.text):
        quoted = "\n".join(f"> {line}" if line else ">" for line in
                            replytext.new_text(msg.parsed.text).splitlines())
        desk.notifier.send("not-posted", "not_posted.txt", msg.sender,
                           in_reply_to=msg.message_id, subject=msg.parsed.subject,
                           quoted=quoted)
        return
    desk.notifier.send("help", "help.txt", msg.sender, in_reply_to=msg.message_id)


# -- the -owner address ------------------------------------------------------------------------
def forward_to_owners(desk: ListDesk, msg: Incoming) -> None:
    """Forward mail to `-owner` From that address with the author in Reply-To, so it
    passes DMARC at the owners' provider whatever the author's domain publishes."""
    owners = roles.owners(desk.session, desk.ml)
    if not owners:
        log.warning("mail to %s dropped: the list has no owner", desk.ml.address)
    author = msg.parsed.author_address or msg.sender
    name = msg.parsed.author_name if msg.parsed.author_address else msg.name
    payload = compose.render_forward(msg.raw, name, author, f"{desk.ml.title} owners",
                                     role_address(desk.ml.address, "owner"),
                                     loop=desk.ml.address)
    bounces = role_address(desk.ml.address, "bounces")
    for owner in owners:
        queue_notice(desk.session, kind="owner", sender=bounces, recipient=owner,
                     payload=payload, now=desk.now, list_id=desk.ml.id)


def handle(desk: ListDesk, role: str, detail: str | None, msg: Incoming) -> None:
    """Do what the address written to asks: its role, and the token or thread it carries."""
    if role == "join":
        desk.request_change("join", msg)
    elif role == "leave" and detail:
        desk.apply_token(detail, msg, kinds="u")
    elif role == "leave":
        desk.request_change("leave", msg)
    elif role == "confirm" and (chosen := _CHOSEN_THREAD_RE.match(detail or "")):
        digestreplies.choose_thread(desk, int(chosen[1]), chosen[2], msg)
    elif role == "confirm":
        desk.apply_token(detail or "", msg, kinds="jlmdxf")
    elif role == "request" and detail and THREAD_WISH.fullmatch(detail):
        wish, thread_id = THREAD_WISH.fullmatch(detail).groups()  # type: ignore[union-attr]
        run(desk, commands.Command(wish, thread_id), msg)
    elif role == "request":
        request(desk, msg)
    elif role == "owner":
        forward_to_owners(desk, msg)


def plain_words(parsed: Parsed) -> commands.Command | commands.Maybe | None:
    """What a message asks in plain words ("please remove me", "digest"): its whole new
    text, or its Subject when it has none. To `-request` even one word is meant for us."""
    text = replytext.new_text(parsed.text)
    return commands.classify(text if text.strip() else commands.strip_reply_prefix(
        parsed.subject))


def on_plain_command(session: Session, config: Config, templates: Environment,
                     ml: MailingList, parsed: Parsed, raw: bytes, envelope_sender: str,
                     command: commands.Command, now: datetime,
                     authenticity: Authenticity) -> None:
    """A message to the list that is a command in plain words: not posted, but asked to
    confirm like the same command to `-request`, and recorded for the owners' report."""
    sender = try_normalize(envelope_sender)
    if sender is None:
        log.info("%s: command %r with no envelope sender not answered", ml.address,
                 command.text)
        return
    desk = ListDesk(session, config, templates, ml, now, authenticity)
    name = parsed.author_name if parsed.author_address == sender else ""
    run(desk, command, Incoming(parsed, raw, sender, name))
    # member 0: a command is no membership event, one-click lookups must not find it.
    session.add(MemberEvent(list_id=ml.id, member_id=0, address=sender,
                            kind=f"cmd-{command.name}" + (f"-{command.arg}" if command.arg
                                                          in ("on", "off") else ""), at=now))


def _apply(session: Session, config: Config, templates: Environment, routes: Sequence[Route],
           received: Received, parsed: Parsed, now: datetime,
           authenticity: Authenticity) -> tuple[Outcome, bool]:
    raw, sender = received.raw, try_normalize(received.sender)
    outcomes = []
    forgotten = False
    for route in routes:
        ml = get_list(session, route.list_address or "")
        if ml is None:
            outcomes.append(Outcome.TEMPORARY_FAILURE)
            continue
        robot = "no envelope sender to answer" if sender is None else \
            received.robot(ml.address)
        if robot or sender is None:
            log.info("%s mail to %s-%s not answered: %s", ml.address, ml.address, route.role,
                     robot)
            outcomes.append(Outcome.DROPPED)
            continue
        name = parsed.author_name if parsed.author_address == sender else ""
        desk = ListDesk(session, config, templates, ml, now, authenticity)
        handle(desk, route.role, route.detail, Incoming(parsed, raw, sender, name))
        forgotten = forgotten or desk.forgotten
        outcomes.append(Outcome.COMMAND)
    return combine(outcomes), forgotten


async def receive(door: Door, incoming: Received, routes: Sequence[Route]) -> Outcome:
    """Handle one message to administrative addresses in a worker thread."""
    outcome = await asyncio.to_thread(_receive, door.db, door.config, door.templates, routes,
                                      incoming, door.clock(), door.authenticity())
    receiver_log.info("%s from=%s to=%s", outcome.value, incoming.mail_from,
                      ",".join(r.list_address or "" for r in routes))
    door.on_post()
    return outcome


def _receive(db: Database, config: Config, templates: Environment, routes: Sequence[Route],
             incoming: Received, now: datetime, authenticity: Authenticity) -> Outcome:
    """The changes and the notices a message causes commit together, before the receiver
    answers 250."""
    parsed = incoming.parsed
    if isinstance(parsed, Malformed):
        return Outcome.MALFORMED
    with db.session() as session:
        outcome, forgotten = _apply(session, config, templates, routes, incoming, parsed, now,
                                    authenticity)
    if forgotten:
        personal.compact(db)
    return outcome
