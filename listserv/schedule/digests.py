"""Digest runs in the database: open a run once per list and period, queue it, compose it.

A run and all its deliveries are written in one transaction. The unique (list, period,
serial) constraint on the run row is the only thing that makes a digest go out exactly once,
so any number of schedulers in any number of processes may try: one insert wins, the others
see a conflict and move on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import date, datetime

from jinja2 import Environment
from sqlalchemy import exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import digest, unsubscribe
from listserv.core.addresses import role_address
from listserv.core.compose import list_info
from listserv.store.database import Database
from listserv.store.models import (
    Delivery,
    DigestRun,
    MailingList,
    Member,
    Post,
    Thread,
    ThreadWish,
    not_paused,
)
from listserv.store.settings import token_secret
from listserv.web import paths

log = logging.getLogger(__name__)


def content(session: Session, ml: MailingList, per: digest.Period,
            muted: Collection[int] = ()) -> digest.Content | None:
    """What the digest of `per` holds, read from the stored posts, without the `muted`
    threads (None: nothing posted)."""
    rows = session.execute(
        select(Post.id, Post.thread_id, Post.author_name, Post.author_address,
               Post.received_at, Post.new_text)
        .where(Post.list_id == ml.id, Post.received_at >= per.start,
               Post.received_at < per.end, Post.thread_id.not_in(muted),
               Post.imported.is_(False))
        .order_by(Post.received_at, Post.id)
    ).all()
    items = [digest.Item(*row) for row in rows]
    thread_ids = {item.thread_id for item in items}
    threads = {
        tid: digest.ThreadInfo(subject, started)
        for tid, subject, started in session.execute(
            select(Thread.id, Thread.subject, Thread.started_at).where(Thread.id.in_(thread_ids))
        )
    } if thread_ids else {}
    return digest.build(ml.title, ml.address, per, ml.timezone, items, threads)


def render_text(templates: Environment, c: digest.Content) -> str:
    return templates.get_template("digest.txt").render(c=c, wrap=digest.wrap,
                                                       plural=digest.plural)


def render_html(templates: Environment, c: digest.Content) -> str:
    return templates.get_template("digest.html").render(c=c, plural=digest.plural)


def _footer_values(ml: MailingList, recipient: str, archive_url: str,
                   unsubscribe_url: str) -> dict[str, str]:
    return {"title": ml.title, "list_address": ml.address, "recipient": recipient,
            "request_address": role_address(ml.address, "request"),
            "leave_address": role_address(ml.address, "leave"), "archive_url": archive_url,
            "unsubscribe_url": unsubscribe_url}


def footers(templates: Environment, ml: MailingList, recipient: str,
            archive_url: str, unsubscribe_url: str = "") -> tuple[str, str]:
    """The per-reader parts: (plain footer wrapped to 80 columns, HTML footer), with the
    reader's one-click link when the web endpoint is on."""
    values = _footer_values(ml, recipient, archive_url, unsubscribe_url)
    text = templates.get_template("digest-footer.txt").render(**values)
    text = "\n".join(line if line == "-- " else digest.wrap(line) for line in text.splitlines())
    return text, templates.get_template("digest-footer.html").render(**values)


@dataclass(frozen=True)
class Opened:
    """What opening a run did: the run's id and label, and how many readers it queued."""

    run_id: int
    list_address: str
    period: str
    posts: int
    recipients: int


def open_run(
    session: Session, config: Config, templates: Environment, ml: MailingList,
    per: digest.Period, now: datetime, serial: int = 0,
) -> Opened:
    """Insert the run of one period and queue one delivery per digest reader.

    Raises IntegrityError (from the flush) when that run exists already; the caller's
    transaction must then be rolled back.
    """
    run = DigestRun(list_id=ml.id, period=per.label, serial=serial, window_start=per.start,
                    window_end=per.end, created_at=now)
    session.add(run)
    session.flush()
    c = content(session, ml, per)
    if c is None:
        return Opened(run.id, ml.address, per.label, 0, 0)
    html_head, html_tail = digest.split_html(render_html(templates, c))
    run.subject = c.subject
    run.posts = c.new_threads + c.replies
    run.text_head = digest.qp(render_text(templates, c))
    run.text_tail = b""
    run.html_head = digest.qp(html_head)
    run.html_tail = digest.qp(html_tail)
    readers = session.execute(
        select(Member.id, Member.address, Member.digest_hour, Member.timezone)
        .where(Member.list_id == ml.id, Member.mode == "digest", not_paused(now))
        .order_by(Member.id)
    ).all()
    if readers:
        # A reader with their own hour gets this run's one delivery, due at that hour.
        session.execute(insert(Delivery), [
            {"digest_id": run.id, "member_id": mid, "recipient": address, "status": "queued",
             "attempts": 0, "created_at": now,
             "next_attempt_at": now if hour is None else digest.next_at(
                 now, hour, tz or ml.timezone)}
            for mid, address, hour, tz in readers
        ])
    run.recipients = len(readers)
    return Opened(run.id, ml.address, per.label, run.posts, len(readers))


def done_periods(session: Session, list_id: int) -> set[str]:
    return set(session.scalars(select(DigestRun.period).where(DigestRun.list_id == list_id)))


def _existed_since(session: Session, ml: MailingList) -> datetime:
    """From when the list can have had posts: a period that ended before holds none (its
    creation, or its first live post if older; imported posts are in no digest)."""
    first = session.scalar(select(func.min(Post.received_at)).where(
        Post.list_id == ml.id, Post.imported.is_(False)))
    return min(ml.created_at, first) if first is not None else ml.created_at


def schedule(db: Database, config: Config, templates: Environment,
             now: datetime) -> list[Opened]:
    """Open every due run of every list; safe to run in many processes at once."""
    with db.session() as session:
        lists = [(ml.id, ml.digest_hour, ml.timezone, done_periods(session, ml.id),
                  _existed_since(session, ml))
                 for ml in session.scalars(select(MailingList).order_by(MailingList.id))]
    opened = []
    for list_id, hour, tz, done, since in lists:
        for per in digest.due(now, hour, tz, done):
            if per.end <= since:
                continue
            try:
                with db.session() as session:
                    ml = session.get(MailingList, list_id)
                    if ml is None:
                        break
                    opened.append(open_run(session, config, templates, ml, per, now))
                db.inserted(Delivery.__tablename__, opened[-1].recipients)
            except IntegrityError:
                log.info("digest %s of list %d already opened elsewhere", per.label, list_id)
    return opened


def send(session: Session, config: Config, templates: Environment, ml: MailingList,
         per: digest.Period, now: datetime, force: bool) -> Opened | None:
    """`digest send`: open the period's run unless it exists (None); --force adds another."""
    last = session.scalar(select(func.max(DigestRun.serial)).where(
        DigestRun.list_id == ml.id, DigestRun.period == per.label))
    if last is not None and not force:
        return None
    return open_run(session, config, templates, ml, per, now,
                    serial=0 if last is None else last + 1)


def history(session: Session, ml: MailingList, limit: int) -> list[dict[str, object]]:
    """The list's digest runs, newest first, with how many of their deliveries were sent."""
    sent = (select(func.count()).select_from(Delivery)
            .where(Delivery.digest_id == DigestRun.id, Delivery.status == "sent")
            .scalar_subquery())
    rows = session.execute(
        select(DigestRun, sent).where(DigestRun.list_id == ml.id)
        .order_by(DigestRun.period.desc(), DigestRun.serial.desc()).limit(limit)
    ).all()
    return [{"period": run.period, "serial": run.serial, "posts": run.posts,
             "recipients": run.recipients, "sent": delivered,
             "opened_at": run.created_at.isoformat()} for run, delivered in rows]


class Composer:
    """Builds one reader's digest at send time; keeps the last runs' shared bytes.

    Each reader's copy carries their own unsubscribe links, as a post copy does (with the
    web endpoint: one-click URL and leave address; else, with [security]
    personal_unsubscribe, the leave address), their tokens issued at `clock`'s time.
    """

    def __init__(self, config: Config, templates: Environment,
                 clock: Callable[[], datetime]) -> None:
        self.config = config
        self.templates = templates
        self.clock = clock
        self._secret: bytes | None = None  # read once: 10,000 readers, one query
        self._shared: dict[int, tuple[digest.Shared, MailingList]] = {}
        self._lock = threading.Lock()  # the outbox composes in several threads at once

    def compose(self, session: Session, delivery_id: int) -> tuple[str, bytes]:
        """(envelope sender, message bytes) of one digest delivery."""
        delivery = session.get_one(Delivery, delivery_id)
        run_id = delivery.digest_id
        assert run_id is not None
        with self._lock:
            cached = self._shared.get(run_id)
        if cached is None:
            run = session.get_one(DigestRun, run_id)
            ml = session.get_one(MailingList, run.list_id)
            session.expunge(ml)
            cached = (digest.Shared(run.id, run.subject, run.created_at, run.text_head,
                                    run.text_tail, run.html_head, run.html_tail), ml)
            with self._lock:
                if len(self._shared) >= 4:
                    self._shared.pop(next(iter(self._shared)))
                self._shared[run_id] = cached
        shared, ml = cached
        shared = self.without_muted(session, ml, delivery, shared)
        archive = paths.list_archive(self.config.web.base_url, self.config.lists.archive_url,
                                     ml.address, self.config.lists.domain, ml.archive)
        links = self.links(session, ml, delivery)
        text_footer, html_footer = footers(self.templates, ml, delivery.recipient, archive,
                                           links.url if links else "")
        message = digest.message(list_info(ml, archive), shared, delivery.recipient,
                                 f"digest.{run_id}.{delivery.id}@{ml.domain}",
                                 text_footer, html_footer, links.header() if links else "")
        return role_address(ml.address, "bounces"), message

    def without_muted(self, session: Session, ml: MailingList, delivery: Delivery,
                      shared: digest.Shared) -> digest.Shared:
        """The reader's digest without the threads they muted: built for them alone when
        they muted one of it (rare), else the shared bytes. A digest of muted threads only
        is sent whole rather than empty."""
        run = session.get_one(DigestRun, shared.run_id)
        muted = set(session.scalars(select(ThreadWish.thread_id).where(
            ThreadWish.member_id == delivery.member_id, ThreadWish.wish == "mute")))
        if not muted:
            return shared
        if not session.scalar(select(exists().where(
                Post.list_id == ml.id, Post.thread_id.in_(muted),
                Post.received_at >= run.window_start, Post.received_at < run.window_end))):
            return shared
        per = digest.Period(date.fromisoformat(run.period), run.window_start, run.window_end)
        mine = content(session, ml, per, muted)
        if mine is None:
            return shared
        html_head, html_tail = digest.split_html(render_html(self.templates, mine))
        return replace(shared, subject=mine.subject,
                       text_head=digest.qp(render_text(self.templates, mine)), text_tail=b"",
                       html_head=digest.qp(html_head), html_tail=digest.qp(html_tail))

    def links(self, session: Session, ml: MailingList,
              delivery: Delivery) -> unsubscribe.Links | None:
        """The reader's own unsubscribe links, or None for the list-wide leave address."""
        base_url = self.config.web.base_url
        if delivery.member_id is None or not (
                base_url or self.config.security.personal_unsubscribe):
            return None
        if self._secret is None:
            self._secret = token_secret(session, self.config)
        return unsubscribe.links(self._secret, base_url, ml.address, delivery.member_id,
                              delivery.recipient, self.clock())
