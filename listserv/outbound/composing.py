"""Composing what a claimed round sends: a post composed once per process, then finished
(personal links, signature) for each of its recipients."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from jinja2 import Environment

from listserv.config import Config
from listserv.core import verp
from listserv.core.addresses import role_address
from listserv.outbound.finishing import Finisher
from listserv.outbound.keys import load_signer
from listserv.outbound.leases import Claim
from listserv.schedule import digests
from listserv.store.database import Database
from listserv.store.models import MailingList, Notice, Post


class Composing:
    """The messages of claimed deliveries; keeps the last few posts composed."""

    def __init__(self, db: Database, config: Config, templates: Environment,
                 clock: Callable[[], datetime]) -> None:
        self.db = db
        self._composed: dict[int, tuple[str, bytes]] = {}
        self._digests = digests.Composer(config, templates, clock)
        self.finisher = Finisher(db, config, templates, load_signer(config), clock)

    def composed(self, key: tuple[str, int]) -> tuple[str, bytes]:
        """(envelope sender, message bytes) of a message; a post is composed once per worker."""
        kind, ident = key
        if kind == "digest":
            with self.db.session() as session:
                return self._digests.compose(session, ident)
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

    def final(self, claims: list[Claim]) -> list[tuple[str, list[str], bytes]]:
        """(envelope sender, recipients, finished message) of each SMTP transaction of a
        batch. Posts and digests go to each member in a transaction of their own, with a
        signed VERP envelope sender that names the member in any bounce."""
        key = claims[0].message_key
        sender, message = self.composed(key)
        members = {c.recipient: c.member_id for c in claims}
        batches = self.finisher.finish(key, message, members)
        if key[0] == "notice":
            return [(sender, rcpts, data) for rcpts, data in batches]
        secret = self.finisher.secret()
        return [(verp.encode(sender, rcpts[0], secret), rcpts, data) for rcpts, data in batches]
