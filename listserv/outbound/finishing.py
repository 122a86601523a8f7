"""The last step before a message leaves: personal unsubscribe links, then the signature.

With the web endpoint on, each member gets the post with their own one-click link in
List-Unsubscribe and in the footer, so a post becomes one message per recipient. Every
message, post or notice, is DKIM-signed last, after its final change. Automatic mail is
marked so that auto-responders stay silent (RFC 3834); posts are people's mail and are not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.parser import BytesHeaderParser

from jinja2 import Environment
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import aliases, compose, unsubscribe
from listserv.core.addresses import role_address, tagged, thread_wish_address
from listserv.outbound.dmarc import Policies, dns_txt
from listserv.outbound.signing import Signer
from listserv.store.database import Database
from listserv.store.models import MailingList, Notice, Post
from listserv.store.settings import token_secret
from listserv.web import paths

Batch = tuple[list[str], bytes]

# The notice kind of a member's private message relayed to an author: a person's mail.
RELAYED = "relay"


# Posts whose parts for personal copies are kept: the posts a dispatcher has in flight.
POSTS_KEPT = 8


@dataclass(frozen=True)
class PostParts:
    """What every personal copy of a post shares: read once per post, not once per copy
    (three queries per copy made a one-click copy cost 3.25 ms of CPU in a signed fan-out,
    bench/signed_fanout.py --footer)."""

    post: Post  # detached, with what rendering reads
    ml: MailingList
    alias: str
    keep_from: bool


def mark_automatic(message: bytes) -> bytes:
    """Add the headers that silence auto-responders where the composer left them out."""
    headers = BytesHeaderParser().parsebytes(message)
    missing = [f"{name}: {value}\r\n" for name, value in compose.automatic_headers()
               if name not in headers]
    return "".join(missing).encode() + message


class Finisher:
    def __init__(self, db: Database, config: Config, templates: Environment,
                 signer: Signer | None, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.config = config
        self.templates = templates
        self.signer = signer
        self.clock = clock
        self.dmarc = (Policies(dns_txt(config.dmarc.timeout), config.dmarc.cache_seconds)
                      if config.dmarc.lookup else None)
        self._secret: bytes | None = None
        self._parts: dict[int, PostParts] = {}
        self._parts_lock = threading.Lock()  # copies are finished in several threads

    def secret(self) -> bytes:
        """The token secret, read once: a fan-out must not pay a transaction per copy."""
        if self._secret is None:
            with self.db.session() as session:
                self._secret = token_secret(session, self.config)
        return self._secret

    def sign(self, message: bytes) -> bytes:
        if self.signer is None:
            return message
        return self.signer.sign(message, int(self.clock().timestamp()))

    def finish_notice(self, notice_id: int, message: bytes,
                      recipients: list[str]) -> list[Batch]:
        """A notice, marked automatic unless it relays a person's mail, signed."""
        with self.db.session() as session:
            relayed = session.get_one(Notice, notice_id).kind == RELAYED
        return [(recipients, self.sign(message if relayed else mark_automatic(message)))]

    def finish_digest(self, message: bytes, recipients: list[str]) -> list[Batch]:
        """A digest, composed for its reader already: signed."""
        return [(recipients, self.sign(message))]

    def finish_post(self, post_id: int, message: bytes,
                    members: dict[str, int | None]) -> list[Batch]:
        """(recipients, final bytes) groups of a post's list-wide copy; `members` maps each
        recipient to their member id, if they are one."""
        if self.config.web.base_url:
            return [([rcpt], self.sign(personal or message))
                    for rcpt, personal in self.personal_posts(post_id, members)]
        if self.config.security.personal_unsubscribe:
            # Without the web endpoint each copy still names the member's own leave address,
            # swapped into the shared bytes: 0.01 ms per recipient against 0.41 ms for
            # composing again (bench/finishing.py; see core.unsubscribe).
            secret = self.secret()
            return [([rcpt], self.sign(unsubscribe.personalize(message, secret, member_id, rcpt,
                                                               self.clock())))
                    for rcpt, member_id in members.items()]
        return [(list(members), self.sign(message))]

    def personal_posts(self, post_id: int,
                       members: dict[str, int | None]) -> list[tuple[str, bytes]]:
        """The post for each recipient with their own links; empty bytes for a recipient
        who is no longer a member (they get the list-wide version)."""
        secret = self.secret()
        parts = self.post_parts(post_id)
        out = []
        for rcpt, member_id in members.items():
            if member_id is None:
                out.append((rcpt, b""))
                continue
            links = unsubscribe.links(secret, self.config.web.base_url, parts.ml.address,
                                      member_id, rcpt, self.clock())
            out.append((rcpt, render_post(self.config, self.templates, parts.post, parts.ml,
                                          parts.alias, links, parts.keep_from)))
        return out

    def post_parts(self, post_id: int) -> PostParts:
        """The shared parts of a post's personal copies, read on its first copy."""
        with self._parts_lock:
            if post_id in self._parts:
                return self._parts[post_id]
            secret = self.secret()
            with self.db.read() as session:
                post = session.get_one(Post, post_id)
                ml = session.get_one(MailingList, post.list_id)
                alias = (aliases.alias_address(secret, ml.address, post.author_address)
                         if ml.from_rewrite == "alias" else "")
                parts = PostParts(post, ml, alias, self.keeps_from(ml, post))
                session.expunge_all()  # detached, with every column loaded
            if len(self._parts) >= POSTS_KEPT:
                self._parts.pop(next(iter(self._parts)))
            self._parts[post_id] = parts
            return parts

    def keeps_from(self, ml: MailingList, post: Post) -> bool:
        """Whether this post may keep its author's From ([dmarc] lookup and p=none)."""
        return (self.dmarc is not None and ml.from_rewrite == "always"
                and self.dmarc.keeps_from(post.author_address))

    def render(self, session: Session, post: Post, ml: MailingList) -> bytes:
        """The list-wide copy of a post."""
        return render_post(self.config, self.templates, post, ml,
                           author_alias(session, self.config, ml, post), None,
                           self.keeps_from(ml, post))


def author_alias(session: Session, config: Config, ml: MailingList, post: Post) -> str:
    """The From address of a post on a list whose from_rewrite is "alias", else ""."""
    if ml.from_rewrite != "alias":
        return ""
    return aliases.alias_address(token_secret(session, config), ml.address, post.author_address)


def render_post(config: Config, templates: Environment, post: Post, ml: MailingList,
                alias: str, links: unsubscribe.Links | None = None,
                keep_from: bool = False) -> bytes:
    """A post as members get it: list-wide, or with one member's unsubscribe links;
    `keep_from` leaves the author's From as written."""
    archive_url, archived_at = archive_links(config, ml, post.id)
    footer = templates.get_template("footer.txt").render(
        title=ml.title, list_address=ml.address,
        leave_address=role_address(ml.address, "leave"),
        mute_address=thread_wish_address(ml.address, "mute", post.thread_id),
        archive_url=archive_url, unsubscribe_url=links.url if links else "",
    )
    info = compose.list_info(ml, archive_url)
    if keep_from:
        info = replace(info, from_rewrite="never")
    return compose.render_post(post.raw, info,
                               post.author_name, post.author_address, footer,
                               reply_to=tagged(ml.address, f"t{post.thread_id}"),
                               unsubscribe=links.header() if links else "",
                               author_alias=alias, keep_arc=config.dkim.arc,
                               archived_at=archived_at)


def archive_links(config: Config, ml: MailingList, post_id: int) -> tuple[str, str]:
    """(List-Archive, Archived-At) of a post: the permalink only when the list's archive
    is our own web forum."""
    base, domain = config.web.base_url, config.lists.domain
    archive = paths.list_archive(base, config.lists.archive_url, ml.address, domain, ml.archive)
    if not base or ml.archive == "none":
        return archive, ""
    return archive, paths.post_url(base, ml.address, domain, post_id)
