"""Replies to a digest, received at `-request` (the digest's From): posted in the thread
they answer, or held while their author chooses the conversation by a signed address or
its number. Every change happens in the `-request` message's transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from listserv.core import digestreply, threads, tokens
from listserv.core.addresses import Route, identity, role_address, tagged
from listserv.core.message import Malformed, Parsed, parse
from listserv.inbound import moderation, posts
from listserv.store.models import DigestRun, Held, Post, Thread

if TYPE_CHECKING:
    from listserv.inbound.desk import Incoming, ListDesk

log = logging.getLogger(__name__)

ANY_THREAD = 0  # the Reply-To of the "which conversation" email: named by its number


def digest_sections(desk: ListDesk, parsed: Parsed) -> list[digestreply.Section]:
    """The threads of the digest a message replies to; none if it is not one."""
    run_id = digestreply.digest_run(parsed.parent_candidates)
    run = desk.session.get(DigestRun, run_id) if run_id is not None else None
    if run is not None and run.list_id == desk.ml.id:
        where = (
            Post.list_id == desk.ml.id,
            Post.received_at >= run.window_start,
            Post.received_at < run.window_end,
        )
    elif digestreply.is_digest_subject(parsed.subject, desk.ml.title):
        where = (
            Post.list_id == desk.ml.id,
            Post.thread_id.in_(digestreply.thread_addresses(parsed.text, desk.ml.address)),
        )
    else:
        return []
    rows = desk.session.execute(
        select(Thread.id, Thread.subject)
        .join(Post, Post.thread_id == Thread.id)
        .where(*where)
        .group_by(Thread.id, Thread.subject)
        .order_by(func.min(Post.id))
    ).all()
    return [digestreply.Section(tid, subject) for tid, subject in rows]


def reply_to_digest(desk: ListDesk, msg: Incoming) -> bool:
    """Post a reply to a digest in the thread it answers, or hold it and ask the member
    which conversation they meant; False if it is not a reply to a digest.

    Only for a member (the address we answer): the answers name the digest's subjects, and
    anyone can write a digest-like message naming `LIST+tN@` addresses. A stranger's words
    are quoted back like any other, the same whether or not those threads exist."""
    if desk.member(msg.sender) is None:
        return False
    sections = digest_sections(desk, msg.parsed)
    if not sections:
        return False
    choice = digestreply.choose(
        msg.parsed.subject, msg.parsed.text, desk.ml.address, desk.ml.subject_prefix, sections
    )
    log.info("%s: reply to a digest from %s: %s", desk.ml.address, msg.sender, choice.reason)
    if choice.thread_id is not None:
        subject = next(s.subject for s in sections if s.thread_id == choice.thread_id)
        post_in_thread(desk, msg.raw, msg.parsed, msg.sender, choice.thread_id, subject)
        return True
    raw, parsed = posts.ensure_message_id(msg.raw, msg.parsed, desk.ml.domain)
    if desk.session.scalar(
        select(Held.id).where(Held.list_id == desk.ml.id, Held.message_id == parsed.message_id)
    ):
        return True  # the same reply again (a retry after a lost 250): asked once
    held = Held(
        list_id=desk.ml.id,
        message_id=parsed.message_id,
        sender=parsed.author_address or msg.sender,
        envelope_sender=msg.sender,
        subject=parsed.subject,
        reason="a reply to a digest waiting for its author to choose the conversation",
        received_at=desk.now,
        raw=raw,
    )
    desk.session.add(held)
    desk.session.flush()
    ask_which(desk, held, msg.sender, sections, msg.message_id)
    return True


def ask_which(
    desk: ListDesk,
    held: Held,
    sender: str,
    sections: Sequence[digestreply.Section],
    in_reply_to: str | None,
) -> None:
    """The one "Which conversation did you mean?" email: an address per thread, and a
    Reply-To that takes the number of a conversation."""
    choices = [
        {"subject": s.subject, "address": thread_choice_address(desk, held, sender, s.thread_id)}
        for s in sections
    ]
    desk.notifier.send(
        "which-thread",
        "which_thread.txt",
        sender,
        in_reply_to=in_reply_to,
        reply_to=thread_choice_address(desk, held, sender, ANY_THREAD),
        subject=held.subject,
        choices=choices,
    )


def thread_choice_address(desk: ListDesk, held: Held, sender: str, thread_id: int) -> str:
    token = tokens.issue(
        desk.secret,
        "p",
        held.id,
        desk.binding("reply", held.id, sender, f"t{thread_id}"),
        desk.now,
        timedelta(days=desk.config.security.confirm_days),
    )
    return tagged(role_address(desk.ml.address, "confirm"), f"t{thread_id}.{token}")


def choose_thread(desk: ListDesk, thread_id: int, text: str, msg: Incoming) -> None:
    """The member chose the conversation of their held digest reply (by its address,
    or by its number in a reply): post it there."""
    try:
        peeked = tokens.peek(text)
        held = desk.session.get(Held, peeked.ident) if peeked and peeked.kind == "p" else None
        if held is None or held.list_id != desk.ml.id:
            raise tokens.TokenError("this message was already posted or has expired")
        sender = held.envelope_sender or held.sender
        if identity(msg.sender) != identity(sender):
            raise tokens.TokenError("only the author of the message may choose where it is posted")
        token = tokens.verify(
            desk.secret, text, desk.binding("reply", held.id, sender, f"t{thread_id}"), desk.now
        )
        parsed = parse(held.raw, desk.config.limits)
        if isinstance(parsed, Malformed):  # it was parsed when it was held
            raise tokens.TokenError(f"the held message cannot be read: {parsed.reason}")
        sections = digest_sections(desk, parsed)
        if thread_id == ANY_THREAD:
            number = digestreply.chosen_number(msg.parsed.text, len(sections))
            if number is None:  # not a number we offered: ask again, nothing spent
                ask_which(desk, held, sender, sections, msg.message_id)
                return
            thread_id = sections[number - 1].thread_id
        thread = desk.session.get(Thread, thread_id)
        if thread is None or thread.list_id != desk.ml.id:
            raise tokens.TokenError("this conversation is unknown to this list")
    except tokens.TokenError as exc:
        desk.notifier.send(
            "refused", "token_refused.txt", msg.sender, in_reply_to=msg.message_id, reason=str(exc)
        )
        return
    desk.use(token)
    desk.session.delete(held)
    desk.session.flush()
    post_in_thread(desk, held.raw, parsed, sender, thread_id, thread.subject)


def post_in_thread(
    desk: ListDesk, raw: bytes, parsed: Parsed, sender: str, thread_id: int, subject: str
) -> None:
    """Post as if sent to the thread's reply address: the list's rules apply alike."""
    if digestreply.is_digest_subject(parsed.subject, desk.ml.title):
        raw = digestreply.with_subject(raw, f"Re: {threads.strip_prefix(subject, '')}")
        reparsed = parse(raw, desk.config.limits)
        parsed = parsed if isinstance(reparsed, Malformed) else reparsed
    route = Route("list", desk.ml.address, "post", f"t{thread_id}")
    result = posts.apply_in_session(
        desk.session,
        route,
        raw,
        parsed,
        sender,
        desk.now,
        lambda session, ml, held, parsed, sender, now: moderation.on_held(
            session, desk.config, desk.notifier.templates, ml, held, parsed, sender, now
        ),
        desk.authenticity,
    )
    log.info(
        "%s: reply to a digest from %s: %s (%s)",
        desk.ml.address,
        sender,
        result.outcome.value,
        result.detail,
    )
