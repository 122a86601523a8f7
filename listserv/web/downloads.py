"""What the archive hands out as files: a thread as an mbox, an attachment, a list's feed.

The mbox holds what the thread page shows, not the stored messages: the web archive names
nobody by address (see `text`), and on a patient-support list a file anyone may download
must not hand a harvester every poster's address, nor a name on an "alias" list whose
members never see addresses even in their own mail. So each message is written anew: From
the poster's shown name at the list's address (a reply goes to the list, as from a copy
with a rewritten From), the subject and text with addresses hidden as on the page, the
Message-ID and In-Reply-To kept (mail programs thread by them), the attachments kept (the
page offers them too). Received lines, Cc, Reply-To and every other header stay out.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from listserv.core import mbox
from listserv.core.headers import one_line
from listserv.store.models import MailingList, Post, Thread
from listserv.web import paths, reading, text
from listserv.web.site import Site, Visit, number

FEED_ENTRIES = 30
# LF line ends (mboxrd turns CRLF into LF anyway); lines long enough for any one value.
MBOX_POLICY = default.clone(linesep="\n", max_line_length=998)


class Downloads(Site):
    async def mbox(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit, ml: MailingList,
                 thread: Thread) -> web.StreamResponse:
            body = b"".join(_masked_entries(session, ml, thread))
            response = web.Response(
                body=body, content_type="application/mbox",
                headers={"Content-Disposition": f'attachment; filename="thread-{thread.id}.mbox"'},
            )
            self.finish(visit, response)
            return response

        return await self.on_row(request, Thread, number(request, "id"), work)

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        index = number(request, "n")

        def work(session: Session, visit: Visit, ml: MailingList,
                 post: Post) -> web.StreamResponse:
            parts = reading.attachment_parts(post.raw)
            if not 0 < index <= len(parts):
                return self.not_found(visit)
            part = parts[index - 1]
            data = part.get_payload(decode=True)
            # Always a download, never rendered: an HTML or SVG attachment shown on our
            # origin would run its author's script with the reader's session.
            response = web.Response(
                body=data if isinstance(data, bytes) else b"",
                content_type="application/octet-stream",
                headers={"Content-Disposition": _disposition(reading.filename(part, index))},
            )
            self.finish(visit, response)
            return response

        return await self.on_row(request, Post, number(request, "post"), work)

    async def feed(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit, ml: MailingList) -> web.StreamResponse:
            posts = list(session.scalars(select(Post).where(Post.list_id == ml.id)
                                         .order_by(Post.id.desc()).limit(FEED_ENTRIES)))
            subjects = dict(session.execute(
                select(Thread.id, Thread.subject)
                .where(Thread.id.in_({p.thread_id for p in posts}))).all())
            base = self.config.web.base_url or str(request.url.origin())
            domain = self.config.lists.domain
            allowed = reading.own_addresses(ml)
            body = self.templates.get_template("web/feed.xml").render(
                ml=ml,
                posts=posts,
                subjects=subjects,
                author=text.author,
                list_url=paths.list_url(base, ml.address, domain),
                post_url=lambda p: paths.post_url(base, ml.address, domain, p.id),
                own_words=lambda p: text.hide_addresses(p.new_text, allowed),
                updated=(posts[0].received_at if posts else ml.created_at).isoformat(),
            )
            response = web.Response(text=body, content_type="application/atom+xml")
            self.finish(visit, response)
            return response

        return await self.on_list(request, work)


def _masked_entries(session: Session, ml: MailingList, thread: Thread) -> list[bytes]:
    """The thread's posts in order as mboxrd entries, addresses hidden (see above)."""
    parent = aliased(Post)
    rows = session.execute(
        select(Post, parent.message_id)
        .outerjoin(parent, parent.id == Post.parent_id)
        .where(Post.thread_id == thread.id)
        .order_by(Post.id)
    )
    allowed = reading.own_addresses(ml)
    return [
        mbox.mboxrd(ml.address, post.received_at,
                    masked_message(post, in_reply_to, ml.address, allowed))
        for post, in_reply_to in rows
    ]


def masked_message(post: Post, in_reply_to: str | None, list_address: str,
                   allowed: frozenset[str]) -> bytes:
    """One post as the mbox download holds it: shown name at the list's address, subject
    and text with addresses hidden, its attachments, its place in the thread."""
    msg = EmailMessage(policy=MBOX_POLICY)
    local, _, domain = list_address.rpartition("@")
    shown = one_line(text.author(post.author_name, post.author_address))
    msg["From"] = Address(display_name=shown, username=local, domain=domain)
    msg["To"] = list_address
    msg["Subject"] = one_line(text.hide_addresses(post.subject, allowed))
    msg["Date"] = post.date or post.received_at
    msg["Message-ID"] = f"<{one_line(post.message_id)}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{one_line(in_reply_to)}>"
    msg.set_content(text.hide_addresses(post.body, allowed))
    for i, part in enumerate(reading.attachment_parts(post.raw), 1):
        data = part.get_payload(decode=True)
        msg.add_attachment(data if isinstance(data, bytes) else b"",
                           maintype=part.get_content_maintype(),
                           subtype=part.get_content_subtype(),
                           filename=text.hide_addresses(reading.filename(part, i), allowed))
    return msg.as_bytes()


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
