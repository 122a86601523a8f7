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
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from jinja2 import Environment
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from . import reports
from .addresses import role_address
from .config import Config
from .db import Database, insert_ignore
from .finishing import Batch, Finisher
from .keys import load_signer
from .models import Delivery, FanoutJob, MailingList, Member, Notice, Post
from .transports import SendResult, Transport

log = logging.getLogger("listserv.outbox")

EXPAND_BATCH = 1000
MAX_AGE = timedelta(days=5)


def backoff(attempts: int, jitter: float) -> timedelta:
    """About a minute after the first failure, doubling to an hour; jitter in [0, 1)."""
    base = min(60 * 2 ** max(attempts - 1, 0), 3600)
    return timedelta(seconds=base * (0.8 + 0.4 * jitter))


@dataclass(frozen=True)
class Claim:
    id: int
    post_id: int | None
    notice_id: int | None
    recipient: str
    created_at: datetime

    @property
    def message_key(self) -> tuple[str, int]:
        """Which message this delivery sends; claims with one key share an SMTP transaction."""
        if self.post_id is not None:
            return ("post", self.post_id)
        assert self.notice_id is not None
        return ("notice", self.notice_id)


def queue_notice(
    session: Session, *, kind: str, sender: str, recipient: str, payload: bytes,
    now: datetime, list_id: int | None = None,
) -> Notice:
    """Queue a message composed for one person, in the caller's transaction."""
    notice = Notice(list_id=list_id, kind=kind, sender=sender, payload=payload, created_at=now)
    session.add(notice)
    session.flush()
    session.add(Delivery(notice_id=notice.id, recipient=recipient, status="queued", attempts=0,
                         next_attempt_at=now, created_at=now))
    return notice


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
        self.worker = uuid.uuid4().hex[:16]
        self._composed: dict[int, tuple[str, bytes]] = {}
        self.finisher = Finisher(db, config, templates, load_signer(config), clock)

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
                return False
            post = session.get_one(Post, job.post_id)
            members = session.execute(
                select(Member.id, Member.address, Member.receive_own_posts)
                .where(Member.list_id == post.list_id, Member.mode == "each",
                       Member.id > job.cursor)
                .order_by(Member.id)
                .limit(EXPAND_BATCH)
            ).all()
            rows = [
                {"post_id": post.id, "member_id": mid, "recipient": address,
                 "status": "queued", "attempts": 0, "next_attempt_at": now, "created_at": now}
                for mid, address, own in members
                if own or address != post.author_address
            ]
            insert_ignore(session, Delivery, rows)
            if members:
                job.cursor = members[-1][0]
            job.done = len(members) < EXPAND_BATCH
        return True

    # -- claiming and recording ----------------------------------------------------------
    def claim(self, limit: int) -> list[Claim]:
        """Lease up to `limit` due deliveries to this worker."""
        now = self.clock()
        lease = now + timedelta(seconds=self.config.delivery.lease_seconds)
        with self.db.session() as session:
            ids = session.scalars(
                select(Delivery.id)
                .where(
                    Delivery.status.in_(("queued", "deferred")),
                    Delivery.next_attempt_at <= now,
                    or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
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
                       Delivery.created_at)
                .where(Delivery.id.in_(ids))
                .order_by(Delivery.post_id, Delivery.notice_id, Delivery.id)
            ).all()
        return [Claim(*row) for row in rows]

    def record(self, claims: list[Claim], results: dict[str, SendResult]) -> None:
        now = self.clock()
        sent = []
        with self.db.session() as session:
            for claim in claims:
                result = results.get(claim.recipient, SendResult(451, "no answer for recipient"))
                if result.ok:
                    sent.append(claim.id)
                    continue
                too_old = now - claim.created_at > MAX_AGE
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
            delivery.status = "failed"
            log.warning("delivery %s to %s failed: %s", claim.id, claim.recipient,
                        delivery.last_error)
        else:
            delivery.status = "deferred"
            delivery.next_attempt_at = now + backoff(delivery.attempts, self.rng())

    def release(self) -> None:
        """Give back this worker's leases, so a clean shutdown leaves nothing waiting."""
        with self.db.session() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.lease_owner == self.worker, Delivery.status != "sent")
                .values(lease_until=None, lease_owner=None)
            )

    # -- composing and sending -------------------------------------------------------------
    def composed(self, key: tuple[str, int]) -> tuple[str, bytes]:
        """(envelope sender, message bytes) of a message; a post is composed once per worker."""
        kind, ident = key
        if kind == "notice":
            with self.db.session() as session:
                notice = session.get_one(Notice, ident)
                return notice.sender, notice.payload
        post_id = ident
        if post_id not in self._composed:
            with self.db.session() as session:
                post = session.get_one(Post, post_id)
                ml = session.get_one(MailingList, post.list_id)
                message = self.finisher.render(session, post, ml)
                sender = role_address(ml.address, "bounces")
            if len(self._composed) >= 8:
                self._composed.pop(next(iter(self._composed)))
            self._composed[post_id] = (sender, message)
        return self._composed[post_id]

    def final(self, claims: list[Claim]) -> tuple[str, list[Batch]]:
        """The envelope sender and the finished (personal, signed) messages for a batch."""
        key = claims[0].message_key
        sender, message = self.composed(key)
        return sender, self.finisher.finish(key, message, [c.recipient for c in claims])

    async def _deliver(self, claims: list[Claim]) -> None:
        sender, batches = await asyncio.to_thread(self.final, claims)
        results: dict[str, SendResult] = {}
        for sent in await asyncio.gather(
            *(self.transport.send(sender, rcpts, final) for rcpts, final in batches)
        ):
            results |= sent
        await asyncio.to_thread(self.record, claims, results)

    def _batches(self, claims: list[Claim]) -> list[list[Claim]]:
        size = self.config.delivery.batch_size
        batches: list[list[Claim]] = []
        for claim in claims:
            same = batches and batches[-1][0].message_key == claim.message_key
            if same and len(batches[-1]) < size:
                batches[-1].append(claim)
            else:
                batches.append([claim])
        return batches

    async def run_once(self) -> int:
        """Expand and send everything due now; returns how many deliveries were attempted."""
        while await asyncio.to_thread(self.expand_batch):
            pass
        attempted = 0
        limit = self.config.delivery.batch_size * self.config.delivery.connections
        while claims := await asyncio.to_thread(self.claim, limit):
            # Messages in the order they were written (a question before its reply), the
            # batches of one message in parallel.
            for _, batches in groupby(self._batches(claims), key=lambda b: b[0].message_key):
                await asyncio.gather(*(self._deliver(batch) for batch in batches))
            attempted += len(claims)
        return attempted

    async def run_forever(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Work until `stop`; `wake` is set by the receiver after each stored post."""
        poll = self.config.delivery.poll_seconds
        while not stop.is_set():
            wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("outbox run failed; retrying after %ss", poll)
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
            await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
