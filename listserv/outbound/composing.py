"""Composing what a claimed round sends: each kind of source (a post, a notice, a digest)
says how its message is composed, finished for its recipients and addressed; a post is
composed once per process, then finished (personal links, signature) for each copy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from jinja2 import Environment

from listserv.config import Config
from listserv.core import verp
from listserv.core.addresses import role_address
from listserv.outbound.finishing import Batch, Finisher
from listserv.outbound.keys import load_signer
from listserv.outbound.leases import Claim
from listserv.schedule import digests
from listserv.store.database import Database
from listserv.store.models import MailingList, Notice, Post, SourceKind

# Posts kept composed: the posts a dispatcher has in flight.
POSTS_KEPT = 8


class Source(Protocol):
    """What the outbox does with one kind of stored message (its list, for the settings
    that apply, is `store.models.SOURCE_MODELS[kind].list_id`)."""

    def compose(self, ident: int) -> tuple[str, bytes]:
        """(envelope sender, message bytes) of the message `ident` names."""

    def finish(self, ident: int, message: bytes,
               members: dict[str, int | None]) -> list[Batch]:
        """(recipients, final bytes) of each SMTP transaction sending it."""

    def envelope(self, sender: str, recipient: str) -> str:
        """The envelope sender of the transaction to `recipient` (first of its batch)."""


class Posts:
    """A post: composed once per process for its list, finished per copy, and sent from
    a VERP address that names its member in any bounce."""

    def __init__(self, db: Database, finisher: Finisher) -> None:
        self.db = db
        self.finisher = finisher
        self._composed: dict[int, tuple[str, bytes]] = {}
        self._composing = threading.Lock()

    def compose(self, ident: int) -> tuple[str, bytes]:
        # A post's copies are finished in several threads at once: the first composes it,
        # the others wait for it (each composing it cost 14% of the dispatcher's time in
        # bench/end_to_end.py, py-spy).
        with self._composing:
            if ident not in self._composed:
                with self.db.session() as session:
                    post = session.get_one(Post, ident)
                    ml = session.get_one(MailingList, post.list_id)
                    message = self.finisher.render(session, post, ml)
                    sender = role_address(ml.address, "bounces")
                if len(self._composed) >= POSTS_KEPT:
                    self._composed.pop(next(iter(self._composed)))
                self._composed[ident] = (sender, message)
            return self._composed[ident]

    def finish(self, ident: int, message: bytes,
               members: dict[str, int | None]) -> list[Batch]:
        return self.finisher.finish_post(ident, message, members)

    def envelope(self, sender: str, recipient: str) -> str:
        return verp.encode(sender, recipient, self.finisher.secret())


class Notices:
    """A notice: stored whole with its sender; one transaction for its recipients."""

    def __init__(self, db: Database, finisher: Finisher) -> None:
        self.db = db
        self.finisher = finisher

    def compose(self, ident: int) -> tuple[str, bytes]:
        with self.db.session() as session:
            notice = session.get_one(Notice, ident)
            return notice.sender, notice.payload

    def finish(self, ident: int, message: bytes,
               members: dict[str, int | None]) -> list[Batch]:
        return self.finisher.finish_notice(ident, message, list(members))

    def envelope(self, sender: str, recipient: str) -> str:
        return sender


class Digests:
    """A digest delivery (`ident` is the delivery's id): composed for its reader from the
    run's shared body, sent from a VERP address like a post."""

    def __init__(self, db: Database, finisher: Finisher, composer: digests.Composer) -> None:
        self.db = db
        self.finisher = finisher
        self.composer = composer

    def compose(self, ident: int) -> tuple[str, bytes]:
        with self.db.session() as session:
            return self.composer.compose(session, ident)

    def finish(self, ident: int, message: bytes,
               members: dict[str, int | None]) -> list[Batch]:
        return self.finisher.finish_digest(message, list(members))

    def envelope(self, sender: str, recipient: str) -> str:
        return verp.encode(sender, recipient, self.finisher.secret())


class Composing:
    """The messages of claimed deliveries, by the kind of their source."""

    def __init__(self, db: Database, config: Config, templates: Environment,
                 clock: Callable[[], datetime]) -> None:
        self.db = db
        self.finisher = Finisher(db, config, templates, load_signer(config), clock)
        self.sources: dict[SourceKind, Source] = {
            SourceKind.POST: Posts(db, self.finisher),
            SourceKind.NOTICE: Notices(db, self.finisher),
            SourceKind.DIGEST: Digests(db, self.finisher,
                                       digests.Composer(config, templates, clock)),
        }

    def final(self, claims: list[Claim]) -> list[tuple[str, list[str], bytes]]:
        """(envelope sender, recipients, finished message) of each SMTP transaction of a
        batch. Posts and digests go to each member in a transaction of their own, with a
        signed VERP envelope sender that names the member in any bounce."""
        kind, ident = claims[0].message_key
        source = self.sources[kind]
        sender, message = source.compose(ident)
        members = {c.recipient: c.member_id for c in claims}
        return [(source.envelope(sender, rcpts[0]), rcpts, data)
                for rcpts, data in source.finish(ident, message, members)]
