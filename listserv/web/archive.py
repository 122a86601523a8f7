"""The archive's pages: lists, a list's threads, a thread, search, feed, mbox, attachments,
and signing in and out. Server-rendered HTML, no script; every page reachable from `/`.

Who may read is decided once per request (`Visit`): a public list by anyone, a members-only
list by its members, owners and moderators once signed in; anyone else gets the sign-in
page (or, signed in, the same "not found" as for a list that does not exist).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.config import Config
from listserv.core import mbox
from listserv.store import search
from listserv.store.database import Database, get_list
from listserv.store.models import MailingList, Post, Thread
from listserv.store.settings import token_secret
from listserv.web import paths, reading, signin, text

log = logging.getLogger(__name__)

HTML = "text/html"
POSTS_PER_SEARCH = 20
FEED_ENTRIES = 30


@dataclass
class Visit:
    """One request's reader and browser (its CSRF cookie, made when a form needs it)."""

    request: web.Request
    reader: reading.Reader
    secret: bytes
    browser: str | None
    new_browser: bool = False
    public: bool = False  # a public list's page: search engines may index it

    @property
    def csrf(self) -> str:
        if not self.browser:
            self.browser, self.new_browser = secrets.token_urlsafe(24), True
        return signin.csrf_token(self.secret, self.browser)


class Archive:
    def __init__(
        self,
        db: Database,
        config: Config,
        templates: Environment,
        clock: Callable[[], datetime],
        on_notice: Callable[[], None] | None,
    ) -> None:
        self.db = db
        self.config = config
        self.templates = templates
        self.clock = clock
        self.on_notice = on_notice
        self.secure = config.web.base_url.startswith("https://")
        self._secret: bytes | None = None
        # One small style sheet, an admin's templates/web/style.css first.
        assert templates.loader is not None
        self.css = templates.loader.get_source(templates, "web/style.css")[0].encode()

    # -- plumbing ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """Where links we mail point: [web] base_url, else where we listen (never the Host
        header a client sends, which would let anyone make us mail links to their site)."""
        web_config = self.config.web
        return web_config.base_url or f"http://{web_config.host}:{web_config.port}"

    def secret(self) -> bytes:
        if self._secret is None:
            with self.db.session() as session:
                self._secret = token_secret(session, self.config)
        return self._secret

    def visit(self, session: Session, request: web.Request) -> Visit:
        found = signin.reader(
            session, self.secret(), request.cookies.get(signin.COOKIE), self.clock()
        )
        reader = reading.Reader(found[1], found[0]) if found else reading.Reader()
        return Visit(request, reader, self.secret(), request.cookies.get(signin.CSRF_COOKIE))

    def page(self, visit: Visit, template: str, status: int = 200, **values: Any) -> web.Response:
        body = self.templates.get_template(template).render(visit=visit, **values)
        response = web.Response(text=body, status=status, content_type=HTML)
        self.finish(visit, response)
        return response

    def finish(self, visit: Visit, response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = "private, no-cache"
        if not visit.public:
            response.headers["X-Robots-Tag"] = "noindex, nofollow"
        if visit.new_browser and visit.browser:
            response.set_cookie(
                signin.CSRF_COOKIE,
                visit.browser,
                httponly=True,
                samesite="Lax",
                secure=self.secure,
                path="/",
            )

    async def run(
        self,
        request: web.Request,
        work: Callable[[Session, Visit], web.StreamResponse],
        writes: bool = False,
    ) -> web.StreamResponse:
        """Do a page's database work and rendering in a thread, in one transaction."""

        def go() -> web.StreamResponse:
            self.secret()  # made in its own transaction the first time
            opener = self.db.session if writes else self.db.read
            with opener() as session:
                return work(session, self.visit(session, request))

        try:
            return await asyncio.to_thread(go)
        except SQLAlchemyError as exc:
            log.error(
                "database error on %s %s: %s",
                request.method,
                request.path,
                str(exc.__cause__ or exc).splitlines()[0],
            )
            body = self.templates.get_template("web/unavailable.html").render()
            return web.Response(
                text=body,
                status=503,
                content_type=HTML,
                headers={"Retry-After": "60", "Cache-Control": "no-store"},
            )

    def readable(self, session: Session, visit: Visit) -> MailingList | web.Response:
        """The list named in the URL if this reader may read it, else the page to show."""
        name = visit.request.match_info["list"]
        ml = get_list(session, paths.list_address(name, self.config.lists.domain))
        if ml is not None and reading.may_read(session, visit.reader, ml):
            visit.public = ml.archive == "public"
            return ml
        if visit.reader.address is None:
            return self.page(visit, "web/signin.html", 403, asked=True)
        return self.page(visit, "web/notfound.html", 404)

    def name(self, ml: MailingList) -> str:
        return paths.list_name(ml.address, self.config.lists.domain)

    # -- pages ---------------------------------------------------------------------------
    async def style(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.css,
            content_type="text/css",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    async def index(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit) -> web.StreamResponse:
            cards = reading.lists(session, visit.reader)
            visit.public = visit.reader.address is None
            return self.page(visit, "web/lists.html", cards=cards, name=self.name, when=self.when)

        return await self.run(request, work)

    def when(self, moment: datetime | None, ml: MailingList | None = None) -> str:
        if moment is None:
            return ""
        return text.when(moment, ml.timezone if ml else self.config.lists.timezone)

    async def threads(self, request: web.Request) -> web.StreamResponse:
        page = _page_number(request)

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            ml = self.readable(session, visit)
            if not isinstance(ml, MailingList):
                return ml
            rows, more = reading.threads(session, ml, page)
            return self.page(
                visit,
                "web/threads.html",
                ml=ml,
                rows=rows,
                page=page,
                more=more,
                base=f"/{self.name(ml)}/",
                when=self.when,
                plural=text.plural,
                held=reading.held_count(session, visit.reader, ml),
            )

        return await self.run(request, work)

    async def thread(self, request: web.Request) -> web.StreamResponse:
        thread_id = _number(request, "id")

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            ml = self.readable(session, visit)
            if not isinstance(ml, MailingList):
                return ml
            found = reading.thread(session, ml, thread_id)
            if found is None:
                return self.page(visit, "web/notfound.html", 404)
            thread, posts, authors = found
            subject = thread.subject
            return self.page(
                visit,
                "web/thread.html",
                ml=ml,
                thread=thread,
                posts=posts,
                authors=authors,
                base=f"/{self.name(ml)}/",
                when=self.when,
                plural=text.plural,
                size=text.size,
                reply=reading.reply_address(ml, thread.id),
                reply_subject=f"Re: {subject}",
            )

        return await self.run(request, work)

    async def permalink(self, request: web.Request) -> web.StreamResponse:
        post_id = _number(request, "id")

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            ml = self.readable(session, visit)
            if not isinstance(ml, MailingList):
                return ml
            post = session.get(Post, post_id)
            if post is None or post.list_id != ml.id:
                return self.page(visit, "web/notfound.html", 404)
            response = _see_other(f"/{self.name(ml)}/t/{post.thread_id}#p{post.id}")
            self.finish(visit, response)
            return response

        return await self.run(request, work)

    async def mbox(self, request: web.Request) -> web.StreamResponse:
        thread_id = _number(request, "id")

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            ml = self.readable(session, visit)
            if not isinstance(ml, MailingList):
                return ml
            thread = session.get(Thread, thread_id)
            if thread is None or thread.list_id != ml.id:
                return self.page(visit, "web/notfound.html", 404)
            rows = session.execute(
                select(Post.author_address, Post.received_at, Post.raw)
                .where(Post.thread_id == thread_id)
                .order_by(Post.id)
            )
            body = b"".join(mbox.mboxrd(author, at, raw) for author, at, raw in rows)
            response = web.Response(
                body=body,
                content_type="application/mbox",
                headers={"Content-Disposition": f'attachment; filename="thread-{thread_id}.mbox"'},
            )
            self.finish(visit, response)
            return response

        return await self.run(request, work)

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        post_id, index = _number(request, "post"), _number(request, "n")

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            ml = self.readable(session, visit)
            if not isinstance(ml, MailingList):
                return ml
            post = session.get(Post, post_id)
            parts = reading.attachment_parts(post.raw) if post and post.list_id == ml.id else []
            if not 0 < index <= len(parts):
                return self.page(visit, "web/notfound.html", 404)
            part = parts[index - 1]
            data = part.get_payload(decode=True)
            name = reading.filename(part, index)
            # Always a download, never rendered: an HTML or SVG attachment shown on our
            # origin would run its author's script with the reader's session.
            response = web.Response(
                body=data if isinstance(data, bytes) else b"",
                content_type="application/octet-stream",
                headers={"Content-Disposition": _disposition(name)},
            )
            self.finish(visit, response)
            return response

        return await self.run(request, work)

    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "")[:200]
        page = _page_number(request)

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            ml = self.readable(session, visit)
            if not isinstance(ml, MailingList):
                return ml
            ids = search.search(
                session.connection(),
                ml.id,
                query,
                POSTS_PER_SEARCH + 1,
                (page - 1) * POSTS_PER_SEARCH,
            )
            more = len(ids) > POSTS_PER_SEARCH
            ids = ids[:POSTS_PER_SEARCH]
            found = {p.id: p for p in session.scalars(select(Post).where(Post.id.in_(ids)))}
            subjects = dict(
                session.execute(
                    select(Thread.id, Thread.subject).where(
                        Thread.id.in_({p.thread_id for p in found.values()})
                    )
                ).all()
            )
            allowed = reading.own_addresses(ml)
            results = [
                {
                    "post": found[i],
                    "subject": subjects.get(found[i].thread_id, ""),
                    "author": text.author(found[i].author_name, found[i].author_address),
                    "snippet": search.snippet(
                        text.hide_addresses(found[i].new_text, allowed), query
                    ),
                }
                for i in ids
                if i in found
            ]
            return self.page(
                visit,
                "web/search.html",
                ml=ml,
                query=query,
                results=results,
                page=page,
                more=more,
                base=f"/{self.name(ml)}/",
                when=self.when,
            )

        return await self.run(request, work)

    async def feed(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit) -> web.StreamResponse:
            ml = self.readable(session, visit)
            if not isinstance(ml, MailingList):
                return ml
            posts = list(
                session.scalars(
                    select(Post)
                    .where(Post.list_id == ml.id)
                    .order_by(Post.id.desc())
                    .limit(FEED_ENTRIES)
                )
            )
            subjects = dict(
                session.execute(
                    select(Thread.id, Thread.subject).where(
                        Thread.id.in_({p.thread_id for p in posts})
                    )
                ).all()
            )
            base = self.config.web.base_url or str(visit.request.url.origin())
            allowed = reading.own_addresses(ml)
            body = self.templates.get_template("web/feed.xml").render(
                ml=ml,
                posts=posts,
                subjects=subjects,
                author=text.author,
                list_url=paths.list_url(base, ml.address, self.config.lists.domain),
                post_url=lambda p: paths.post_url(base, ml.address, self.config.lists.domain, p.id),
                own_words=lambda p: text.hide_addresses(p.new_text, allowed),
                updated=(posts[0].received_at if posts else ml.created_at).isoformat(),
            )
            response = web.Response(text=body, content_type="application/atom+xml")
            self.finish(visit, response)
            return response

        return await self.run(request, work)

    # -- signing in and out ----------------------------------------------------------------
    async def signin_form(self, request: web.Request) -> web.StreamResponse:
        def work(session: Session, visit: Visit) -> web.StreamResponse:
            return self.page(visit, "web/signin.html", asked=False)

        return await self.run(request, work)

    async def signin_request(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        client = client_address(request)

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            if not signin.csrf_ok(visit.secret, visit.browser, form.get("csrf")):
                return self.page(visit, "web/expired.html", 400)
            address = form.get("address")
            sent = signin.request_link(
                session,
                self.config,
                self.templates,
                visit.secret,
                address if isinstance(address, str) else "",
                client,
                self.base_url,
                self.clock(),
            )
            if sent:
                log.info("sign-in link queued (request from %s)", client)
            return self.page(visit, "web/signin_sent.html")

        response = await self.run(request, work, writes=True)
        if self.on_notice is not None:  # the outbox sends a queued link now
            self.on_notice()
        return response

    async def signin_link(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            if signin.check_link(session, visit.secret, token, self.clock()) is None:
                return self.page(visit, "web/signin_refused.html", 400)
            return self.page(visit, "web/signin_confirm.html")

        return await self.run(request, work)

    async def signin_confirm(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        form = await request.post()

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            if not signin.csrf_ok(visit.secret, visit.browser, form.get("csrf")):
                return self.page(visit, "web/expired.html", 400)
            signed = signin.sign_in(session, visit.secret, token, self.clock())
            if signed is None:
                return self.page(visit, "web/signin_refused.html", 400)
            response = _see_other("/")
            self.finish(visit, response)
            response.set_cookie(
                signin.COOKIE,
                signed.cookie,
                httponly=True,
                samesite="Lax",
                secure=self.secure,
                path="/",
                max_age=signin.SESSION_DAYS * 86400,
            )
            return response

        return await self.run(request, work, writes=True)

    async def signout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            if not signin.csrf_ok(visit.secret, visit.browser, form.get("csrf")):
                return self.page(visit, "web/expired.html", 400)
            if visit.reader.session_id is not None:
                signin.sign_out(session, visit.reader.session_id, self.clock())
            response = _see_other("/")
            self.finish(visit, response)
            response.del_cookie(signin.COOKIE, path="/")
            return response

        return await self.run(request, work, writes=True)


def client_address(request: web.Request) -> str:
    """Who asks, for the rate limit: the peer, or behind a proxy on this machine (a TLS
    proxy in front of us) the address it forwards for; no one else may claim one."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if peer in ("127.0.0.1", "::1") and forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return peer


def _number(request: web.Request, key: str) -> int:
    """A number of the path; 0 (which names nothing) beyond what an INTEGER key holds."""
    value = int(request.match_info[key])
    return value if value <= signin.MAX_ID else 0


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _page_number(request: web.Request) -> int:
    value = request.query.get("page", "1")
    return max(1, min(int(value), 100_000)) if value.isdigit() and len(value) < 7 else 1


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
