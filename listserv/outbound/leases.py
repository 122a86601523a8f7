"""Who holds a delivery and what a claimed one is: lease owners, retry timing, `Claim`.

A lease names its dispatcher as host:pid:nonce, so a restart (or a neighbour on the same
host) can prove an owner dead and take its deliveries back without waiting for the lease.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.store.models import SOURCE_MODELS, MailingList, SourceKind


def backoff(attempts: int, jitter: float) -> timedelta:
    """About a minute after the first failure, doubling to an hour; jitter in [0, 1)."""
    base = min(60 * 2 ** max(attempts - 1, 0), 3600)
    return timedelta(seconds=base * (0.8 + 0.4 * jitter))


def incarnation() -> str:
    """This dispatcher's lease owner: host, process id and a nonce of this start.

    A restart can then tell its own dead incarnation from a live neighbour (see
    `provably_dead`) and resume at once instead of waiting out the leases.
    """
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 delivers nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def provably_dead(owner: str, me: str, alive: Callable[[int], bool]) -> bool:
    """Whether the lease owner `owner` can no longer deliver, seen from dispatcher `me`.

    Only an owner on our own host can be proven dead: either its process is gone, or it had
    our process id with another nonce (a restart that got the same pid, as pid 1 in a
    container). One dispatcher runs per process, so that earlier one has ended. Owners on
    other hosts, or in a live process, keep their leases until these run out.
    """
    host, pid, nonce = [*owner.split(":"), "", ""][:3]
    my_host, my_pid, _ = me.split(":")
    if host != my_host or not pid.isdigit() or not nonce or owner == me:
        return False
    return pid == my_pid or (int(pid) > 0 and not alive(int(pid)))


def max_age(list_hours: float | None, default_hours: float) -> timedelta:
    """How long a temporary failure is retried: the list's own limit, else the global one."""
    return timedelta(hours=default_hours if list_hours is None else list_hours)


@dataclass(frozen=True)
class Claim:
    id: int
    post_id: int | None
    notice_id: int | None
    recipient: str
    created_at: datetime
    member_id: int | None
    digest_id: int | None = None

    @property
    def message_key(self) -> tuple[SourceKind, int]:
        """Which message this delivery sends.

        A digest carries a footer for its reader, so each digest delivery is its own message.
        """
        return (SourceKind.DIGEST, self.id) if self.digest_id is not None else self.source

    @property
    def source(self) -> tuple[SourceKind, int]:
        """The stored row the message comes from (post, digest run or notice): its list's
        settings apply to every delivery of it."""
        if self.digest_id is not None:
            return (SourceKind.DIGEST, self.digest_id)
        if self.post_id is not None:
            return (SourceKind.POST, self.post_id)
        assert self.notice_id is not None
        return (SourceKind.NOTICE, self.notice_id)

    @property
    def batch_key(self) -> tuple[SourceKind, int, str]:
        """Claims with one key share an SMTP transaction. A post's copy has a VERP sender
        per recipient, so it travels alone; a notice may go to several at once."""
        kind, ident = self.message_key
        return (kind, ident, self.recipient if kind == SourceKind.POST else "")


def list_retry_hours(session: Session, claim: Claim) -> float | None:
    """The max_retry_hours of the list a delivery's message belongs to (None: no list, or
    the list keeps the global value)."""
    kind, ident = claim.source
    model = SOURCE_MODELS[kind]
    return session.scalar(
        select(MailingList.max_retry_hours)
        .join(model, model.list_id == MailingList.id)
        .where(model.id == ident)
    )
