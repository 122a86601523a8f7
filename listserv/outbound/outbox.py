"""The outbox: fan-out jobs become deliveries, deliveries are claimed, sent and recorded.

Each step is its own short transaction, so a worker killed at any point loses nothing:
expansion resumes from its committed cursor (and unique(post, member) makes a repeated
batch harmless), claimed deliveries come back when their lease runs out, and a delivery
is marked sent only after the relay answered 2xx for that recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from jinja2 import Environment
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from listserv.admin import reports
from listserv.config import Config
from listserv.inbound import bounces as bouncing
from listserv.outbound.claims import UNSENT, due_deliveries
from listserv.outbound.composing import Composing
from listserv.outbound.expansion import Expanded, expand
from listserv.outbound.leases import (
    Claim,
    backoff,
    incarnation,
    list_retry_hours,
    max_age,
    pid_alive,
    provably_dead,
)
from listserv.outbound.transports import SendResult, Transport
from listserv.store.database import TEMPORARY_ERRORS, Database
from listserv.store.models import (
    Delivery,
    DeliveryStatus,
    MailingList,
    Member,
)
from listserv.store.settings import sending_paused

log = logging.getLogger(__name__)

# Deliveries claimed per round, however small the SMTP batches: one claim and one record
# transaction per round, not per message (one message per member made 1.2 ms of CPU and a
# commit per message; measured with bench/fanout.py --batch-size 1).
CLAIM_AT_LEAST = 500
PAUSED_WARN_EVERY = timedelta(minutes=1)
RECORD_ATTEMPTS = 5
# The dispatcher's share of the time while posts keep arriving: after each round it pauses
# for (1 - share) / share times the round's length. bench/ingest.py --workers 2 --role all
# (3 runs each, alternated): 641, 645, 634 posts/s accepted against 325, 451, 523 with no
# pause; the copies wait instead (bench/end_to_end.py --workers 2: 74-88 posts/s end to
# end against 105-110).
SHARE_WHILE_ARRIVING = 0.25
NO_ANSWER = SendResult(451, "no answer for recipient")
_ENHANCED_STATUS = re.compile(r"\d{3} ([245]\.\d{1,3}\.\d{1,3})\b")


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep, but wake at once on `stop`."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


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
        """Expand pending fan-out jobs, oldest first, up to EXPAND_BATCH deliveries; False
        when there is none. The dispatcher expands and claims in one step
        (`expand_and_claim`); this half and `claim` are the seam where a test looks at the
        outbox between the two."""
        with self.db.session() as session:
            expanded = self._expand(session, self.clock())
        self.db.inserted(Delivery.__tablename__, expanded.rows)
        return expanded.pending

    def expand_and_claim(self, limit: int, first: bool = False) -> tuple[bool, list[Claim]]:
        """Expand pending jobs and lease what is due, in one transaction: a small post's
        copies are claimed in the step that expands them (one commit, one fsync fewer per
        round); (whether a job was expanded, the claims).

        A big fan-out's `first` round claims only what the connections send at once, so its
        first copies are recorded sent without waiting for 500 more; a small post's copies
        still go in one round.
        """
        now = self.clock()
        with self.db.session() as session:
            expanded = self._expand(session, now)
            if first and self._fanout_unfinished:
                limit = min(limit, 2 * self.config.delivery.connections)
            claims = self._claim(session, limit, now)
        self.db.inserted(Delivery.__tablename__, expanded.rows)
        return expanded.pending, claims

    def _expand(self, session: Session, now: datetime) -> Expanded:
        expanded = expand(session, now)
        self._fanout_unfinished = expanded.unfinished
        return expanded

    # -- claiming and recording ----------------------------------------------------------
    def claim(self, limit: int) -> list[Claim]:
        """Lease up to `limit` due deliveries to this worker (the second half of
        `expand_and_claim`, for tests; see `expand_batch`)."""
        with self.db.session() as session:
            return self._claim(session, limit, self.clock())

    def _claim(self, session: Session, limit: int, now: datetime) -> list[Claim]:
        """Lease up to `limit` due deliveries to this worker, in `session`'s transaction.
        Which deliveries, and in what order, is `claims.due_deliveries`."""
        lease = now + timedelta(seconds=self.config.delivery.lease_seconds)
        everything, paused = sending_paused(session)
        self._warn_paused(everything, paused, now)
        if everything:
            return []
        ids = due_deliveries(session, limit, now, paused)
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

    def record(self, claims: list[Claim], results: dict[int, SendResult | None]) -> None:
        """Record the results of a round's SMTP transactions in one database transaction;
        a claim whose result is None was not sent (an earlier copy to its recipient was
        not accepted) and is only released."""
        now = self.clock()
        sent, held = [], []
        ages: dict[tuple[str, int], timedelta] = {}
        with self.db.session() as session:
            for claim in claims:
                result = results.get(claim.id, NO_ANSWER)
                if result is None:
                    held.append(claim.id)
                    continue
                if result.ok:
                    sent.append(claim.id)
                    continue
                if claim.source not in ages:
                    ages[claim.source] = max_age(list_retry_hours(session, claim),
                                                 self.config.delivery.max_age_hours)
                too_old = now - claim.created_at > ages[claim.source]
                self._record_failure(session, claim, result, now, final=result.permanent or too_old)
            if sent:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(sent))
                    .values(status=DeliveryStatus.SENT, sent_at=now, lease_until=None,
                            lease_owner=None, last_error=None)
                )
            if held:
                session.execute(update(Delivery).where(Delivery.id.in_(held))
                                .values(lease_until=None, lease_owner=None))

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
                .where(Delivery.status.in_(UNSENT),
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

    async def _send_round(self, claims: list[Claim]) -> dict[int, SendResult | None]:
        """Send a round's batches at once, but each recipient's copies in the order of their
        deliveries: a copy waits until the one before it was accepted, and is not sent
        (None) if it was not, so a later post never overtakes an earlier one."""
        loop = asyncio.get_running_loop()
        accepted = {claim.id: loop.create_future() for claim in claims}
        before: dict[int, int] = {}  # a claim -> the claim before it to the same recipient
        last: dict[str, int] = {}
        for claim in sorted(claims, key=lambda c: c.id):
            if claim.recipient in last:
                before[claim.id] = last[claim.recipient]
            last[claim.recipient] = claim.id
        results: dict[int, SendResult | None] = {}

        async def send(batch: list[Claim]) -> None:
            try:
                going = [c for c in batch
                         if c.id not in before or await accepted[before[c.id]]]
                results.update((c.id, None) for c in batch if c not in going)
                if going:
                    found = await self._deliver(going)
                    results.update((c.id, found.get(c.recipient, NO_ANSWER)) for c in going)
            finally:  # also when sending raised: nothing waits for ever
                for c in batch:
                    result = results.get(c.id)
                    accepted[c.id].set_result(result is not None and result.ok)

        await asyncio.gather(*(send(batch) for batch in self._batches(claims)))
        return results

    async def _record_round(self, claims: list[Claim],
                            results: dict[int, SendResult | None]) -> None:
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

    async def run_once(self, stop: asyncio.Event | None = None,
                       arriving: asyncio.Event | None = None) -> int:
        """Expand and send everything due now; returns how many deliveries were attempted.

        With `stop` set it returns after the round in flight, so shutdown waits for one
        batch per connection, not for a whole fan-out. `arriving` is set when a post was
        stored: while posts keep arriving the dispatcher takes a bounded share of the
        time (`SHARE_WHILE_ARRIVING`), so that receivers in the same process or on the
        same cores are not starved by a backlog of copies.
        """
        def stopping() -> bool:
            return stop is not None and stop.is_set()

        attempted = 0
        limit = max(self.config.delivery.batch_size * self.config.delivery.connections,
                    CLAIM_AT_LEAST)
        first = True
        while not stopping():
            # One batch of expansion and one round of sending per turn, claimed in the
            # expansion's transaction: the first copies of a big fan-out leave after its
            # first batch, not after the whole list (4.2 s at 100,000 members), expansion
            # stays ahead of sending, and posts arriving meanwhile join the next round.
            expanding, claims = await asyncio.to_thread(self.expand_and_claim, limit, first)
            first = False
            if not claims:
                if expanding:
                    continue
                break
            started = asyncio.get_running_loop().time()
            await self._record_round(claims, await self._send_round(claims))
            attempted += len(claims)
            if arriving is not None and arriving.is_set():
                # Cleared between turns only: the next turn's expansion sees those posts.
                arriving.clear()
                took = asyncio.get_running_loop().time() - started
                await _pause(took * (1 - SHARE_WHILE_ARRIVING) / SHARE_WHILE_ARRIVING, stop)
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
                await self.run_once(stop, wake)
            except Exception:
                log.exception("outbox run failed; retrying after %ss", poll)
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
            await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
