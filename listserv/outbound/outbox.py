"""The outbox: fan-out jobs become deliveries, deliveries are claimed, sent and recorded.

Each step is its own short transaction, so a worker killed at any point loses nothing:
expansion resumes from its committed cursor (and unique(post, member) makes a repeated
batch harmless), claimed deliveries come back when their lease runs out, and a delivery
is marked sent only after the relay answered 2xx for that recipient.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from jinja2 import Environment
from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from listserv.admin import reports
from listserv.config import Config
from listserv.core.addresses import identity
from listserv.inbound import bounces as bouncing
from listserv.outbound.composing import Composing
from listserv.outbound.leases import (
    Claim,
    backoff,
    incarnation,
    max_age,
    pid_alive,
    provably_dead,
)
from listserv.outbound.transports import SendResult, Transport
from listserv.store.database import TEMPORARY_ERRORS, Database, insert_ignore
from listserv.store.models import (
    SOURCE_MODELS,
    Delivery,
    DeliveryStatus,
    DigestRun,
    FanoutJob,
    MailingList,
    Member,
    Notice,
    Post,
    ThreadWish,
    not_paused,
)
from listserv.store.settings import sending_paused

log = logging.getLogger(__name__)

EXPAND_BATCH = 1000
# Deliveries claimed per round, however small the SMTP batches: one claim and one record
# transaction per round, not per message (one message per member made 1.2 ms of CPU and a
# commit per message; measured with bench/fanout.py --batch-size 1).
CLAIM_AT_LEAST = 500
PAUSED_WARN_EVERY = timedelta(minutes=1)
RECORD_ATTEMPTS = 5
_ENHANCED_STATUS = re.compile(r"\d{3} ([245]\.\d{1,3}\.\d{1,3})\b")


def _not_of_lists(addresses: list[str]) -> list[ColumnElement[bool]]:
    """Deliveries that are not of these lists (posts, notices and digests alike)."""
    if not addresses:
        return []
    of = select(MailingList.id).where(MailingList.address.in_(addresses))
    return [
        ~exists().where(Post.id == Delivery.post_id, Post.list_id.in_(of)),
        ~exists().where(Notice.id == Delivery.notice_id, Notice.list_id.in_(of)),
        ~exists().where(DigestRun.id == Delivery.digest_id, DigestRun.list_id.in_(of)),
    ]


def _list_retry_hours(session: Session, claim: Claim) -> float | None:
    """The max_retry_hours of the list a delivery's message belongs to (None: no list, or
    the list keeps the global value)."""
    kind, ident = claim.source
    model = SOURCE_MODELS[kind]
    return session.scalar(
        select(MailingList.max_retry_hours)
        .join(model, model.list_id == MailingList.id)
        .where(model.id == ident)
    )


class Outbox:
    def __init__(
        self,
        db: Database,
        config: Config,
        transport: Transport,
        templates: Environment,
        clock: Callable[[], datetime],
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.config = config
        self.transport = transport
        self.templates = templates
        self.clock = clock
        self.rng = rng
        self.worker = incarnation()
        self._in_flight = asyncio.Semaphore(2 * config.delivery.connections)
        self._paused_warned: datetime | None = None
        # Whether the job expanded last still has members to expand (a big fan-out).
        self._fanout_unfinished = False
        self.composing = Composing(db, config, templates, clock)
        self.finisher = self.composing.finisher

    # -- expansion ---------------------------------------------------------------------
    def expand_batch(self) -> bool:
        """Expand one batch of one pending fan-out job; False when there is none."""
        now = self.clock()
        with self.db.session() as session:
            job = session.scalar(
                select(FanoutJob)
                .where(FanoutJob.done.is_(False))
                .order_by(FanoutJob.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if job is None:
                self._fanout_unfinished = False
                return False
            post = session.get_one(Post, job.post_id)
            wish = exists().where(ThreadWish.member_id == Member.id,
                                  ThreadWish.thread_id == post.thread_id)
            members = session.execute(
                select(Member.id, Member.address, Member.receive_own_posts)
                .where(Member.list_id == post.list_id,
                       # each post but a muted thread's; a followed thread's for the others
                       or_(and_(Member.mode == "each", ~wish.where(ThreadWish.wish == "mute")),
                           and_(Member.mode != "each", wish.where(ThreadWish.wish == "follow"))),
                       Member.disabled_at.is_(None), not_paused(now), Member.id > job.cursor)
                .order_by(Member.id)
                .limit(EXPAND_BATCH)
            ).all()
            rows = [
                {"post_id": post.id, "member_id": mid, "recipient": address,
                 "status": "queued", "attempts": 0, "next_attempt_at": now, "created_at": now}
                for mid, address, own in members
                if own or identity(address) != identity(post.author_address)
            ]
            insert_ignore(session, Delivery, rows)
            if members:
                job.cursor = members[-1][0]
            job.done = len(members) < EXPAND_BATCH
            self._fanout_unfinished = not job.done
        self.db.inserted(Delivery.__tablename__, len(rows))
        return True

    # -- claiming and recording ----------------------------------------------------------
    def claim(self, limit: int) -> list[Claim]:
        """Lease up to `limit` due deliveries to this worker.

        Only a recipient's oldest unsent delivery is due: a later post never overtakes an
        earlier one that is being retried, so each thread arrives in order (a digest
        waiting for its reader's own hour holds nothing back).
        """
        now = self.clock()
        lease = now + timedelta(seconds=self.config.delivery.lease_seconds)
        earlier = aliased(Delivery)
        with self.db.session() as session:
            everything, paused = sending_paused(session)
            self._warn_paused(everything, paused, now)
            if everything:
                return []
            ids = session.scalars(
                select(Delivery.id)
                .where(
                    *_not_of_lists(paused),
                    Delivery.status.in_(("queued", "deferred")),
                    Delivery.next_attempt_at <= now,
                    or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
                    ~exists().where(
                        earlier.recipient == Delivery.recipient,
                        earlier.status.in_(("queued", "deferred")),
                        earlier.id < Delivery.id,
                        # a digest waiting for its reader's hour holds nothing back
                        ~and_(earlier.digest_id.is_not(None), earlier.next_attempt_at > now),
                    ),
                )
                .order_by(Delivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not ids:
                return []
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(lease_until=lease, lease_owner=self.worker)
            )
            rows = session.execute(
                select(Delivery.id, Delivery.post_id, Delivery.notice_id, Delivery.recipient,
                       Delivery.created_at, Delivery.member_id, Delivery.digest_id)
                .where(Delivery.id.in_(ids))
                .order_by(Delivery.post_id, Delivery.notice_id, Delivery.id)
            ).all()
        return [Claim(*row) for row in rows]

    def _warn_paused(self, everything: bool, paused: list[str], now: datetime) -> None:
        """Say loudly, once a minute, that sending is paused: queued mail is waiting."""
        if not (everything or paused):
            self._paused_warned = None
            return
        if self._paused_warned is not None and now - self._paused_warned < PAUSED_WARN_EVERY:
            return
        self._paused_warned = now
        log.warning("SENDING PAUSED for %s: queued mail waits until `listserv outbox resume`",
                    "every list" if everything else ", ".join(paused))

    def record(self, claims: list[Claim], results: dict[str, SendResult]) -> None:
        """Record the results of a round's SMTP transactions in one database transaction."""
        now = self.clock()
        sent = []
        ages: dict[tuple[str, int], timedelta] = {}
        with self.db.session() as session:
            for claim in claims:
                result = results.get(claim.recipient, SendResult(451, "no answer for recipient"))
                if result.ok:
                    sent.append(claim.id)
                    continue
                if claim.source not in ages:
                    ages[claim.source] = max_age(_list_retry_hours(session, claim),
                                                 self.config.delivery.max_age_hours)
                too_old = now - claim.created_at > ages[claim.source]
                self._record_failure(session, claim, result, now, final=result.permanent or too_old)
            if sent:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(sent))
                    .values(status="sent", sent_at=now, lease_until=None, lease_owner=None,
                            last_error=None)
                )

    def _record_failure(
        self, session: Session, claim: Claim, result: SendResult, now: datetime, final: bool
    ) -> None:
        delivery = session.get_one(Delivery, claim.id)
        delivery.attempts += 1
        delivery.last_error = f"{result.code} {result.text}"[:1000]
        delivery.lease_until = None
        delivery.lease_owner = None
        reports.record_failure(session, delivery, result.code, result.text, final, now)
        if final:
            delivery.status = DeliveryStatus.FAILED
            log.warning("delivery %s to %s failed: %s", claim.id, claim.recipient,
                        delivery.last_error)
            if claim.post_id is not None and claim.member_id is not None:
                self._bounce(session, claim, delivery.last_error, now)
        else:
            delivery.status = DeliveryStatus.DEFERRED
            delivery.next_attempt_at = now + backoff(delivery.attempts, self.rng())

    def _bounce(self, session: Session, claim: Claim, error: str, now: datetime) -> None:
        """A post the relay refused for good (or we gave up on) is a bounce for its member."""
        member = session.get(Member, claim.member_id)
        if member is None:
            return
        ml = session.get_one(MailingList, member.list_id)
        status = _ENHANCED_STATUS.match(error)
        bouncing.register(
            session, ml, member, claim.recipient, permanent=True,
            status=status[1] if status else None,
            source="relay", detail=error, now=now, config=self.config,
            templates=self.templates,
        )

    def reclaim(self) -> int:
        """At start, take back the leases of our own host's dead dispatchers, so a restart
        after a crash resumes at once instead of after `lease_seconds`. What the dead one
        sent but never recorded goes again: duplicates stay bounded by one claimed round."""
        now = self.clock()
        with self.db.session() as session:
            owners = session.scalars(
                select(Delivery.lease_owner).distinct()
                .where(Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)),
                       Delivery.lease_owner.is_not(None), Delivery.lease_until >= now)
            ).all()
            dead = [o for o in owners if o and provably_dead(o, self.worker, pid_alive)]
            if not dead:
                return 0
            result = session.execute(
                update(Delivery)
                .where(Delivery.lease_owner.in_(dead), Delivery.status != DeliveryStatus.SENT)
                .values(lease_until=None, lease_owner=None)
            )
        reclaimed = int(result.rowcount)  # type: ignore[attr-defined]
        log.warning("reclaimed %d deliveries leased by %s, which ended without releasing them",
                    reclaimed, ", ".join(dead))
        return reclaimed

    def release(self) -> None:
        """Give back this worker's leases, so a clean shutdown leaves nothing waiting."""
        with self.db.session() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.lease_owner == self.worker, Delivery.status != DeliveryStatus.SENT)
                .values(lease_until=None, lease_owner=None)
            )

    # -- composing and sending -------------------------------------------------------------
    async def _deliver(self, claims: list[Claim]) -> dict[str, SendResult]:
        # Composed messages wait here for a connection; bounding them bounds memory when
        # each one is large and distinct (a digest per reader), not only the sockets.
        async with self._in_flight:
            transactions = await asyncio.to_thread(self.composing.final, claims)
            results: dict[str, SendResult] = {}
            for envelope, rcpts, data in transactions:
                results |= await self.transport.send(envelope, rcpts, data)
            return results

    async def _record_round(self, claims: list[Claim], results: dict[str, SendResult]) -> None:
        """Record a round in one transaction, retrying while the database is busy: what
        was sent but never recorded would be sent again after the lease."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                await asyncio.to_thread(self.record, claims, results)
                return
            except TEMPORARY_ERRORS:
                if attempt == RECORD_ATTEMPTS - 1:
                    raise
                log.warning("database busy while recording %d deliveries; retrying", len(claims))
                await asyncio.sleep(0.2 * (attempt + 1))

    def _batches(self, claims: list[Claim]) -> list[list[Claim]]:
        size = self.config.delivery.batch_size
        batches: list[list[Claim]] = []
        for claim in claims:
            same = batches and batches[-1][0].batch_key == claim.batch_key
            if same and len(batches[-1]) < size:
                batches[-1].append(claim)
            else:
                batches.append([claim])
        return batches

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Expand and send everything due now; returns how many deliveries were attempted.

        With `stop` set it returns after the round in flight, so shutdown waits for one
        batch per connection, not for a whole fan-out.
        """
        def stopping() -> bool:
            return stop is not None and stop.is_set()

        attempted = 0
        limit = max(self.config.delivery.batch_size * self.config.delivery.connections,
                    CLAIM_AT_LEAST)
        expanding, first = True, True
        while not stopping():
            # One batch of expansion, then one round of sending: the first copies of a big
            # fan-out leave after its first batch, not after the whole list (4.2 s at
            # 100,000 members), and expansion still runs ahead of sending.
            if expanding:
                expanding = await asyncio.to_thread(self.expand_batch)
            # A big fan-out's first round is what the connections send at once, so its
            # first copies are recorded sent without waiting for 500 more; a small post's
            # copies still go in one round.
            short = first and self._fanout_unfinished
            first = False
            size = min(limit, 2 * self.config.delivery.connections) if short else limit
            claims = await asyncio.to_thread(self.claim, size)
            if not claims:
                if expanding:
                    continue
                break
            # A recipient is claimed at most once per round, so the results merge safely.
            results: dict[str, SendResult] = {}
            for found in await asyncio.gather(
                    *(self._deliver(batch) for batch in self._batches(claims))):
                results.update(found)
            await self._record_round(claims, results)
            attempted += len(claims)
        return attempted

    async def run_forever(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Work until `stop`; `wake` is set by the receiver after each stored post."""
        poll = self.config.delivery.poll_seconds
        try:
            await asyncio.to_thread(self.reclaim)
        except TEMPORARY_ERRORS:
            log.warning("database busy; leases of a crashed dispatcher come back when they end")
        while not stop.is_set():
            wake.clear()
            try:
                await self.run_once(stop)
            except Exception:
                log.exception("outbox run failed; retrying after %ss", poll)
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
            await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
