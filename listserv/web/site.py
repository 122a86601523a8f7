"""What every page handler shares: who asks (`Visit`), one transaction in a thread, the
answer's headers, and the one guard before a list's pages.

Who may read is decided once per request: a public list by anyone, a members-only list by
its members, owners and moderators once signed in; anyone else gets the sign-in page (or,
signed in, the same "not found" as for a list that does not exist). `on_list` and `on_row`
put that guard, and the lookup of a thread or post of that list, in front of a page's work.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.app import App
from listserv.store.database import get_list
from listserv.store.models import MailingList, Post, Thread
from listserv.web import paths, reading, signin, text

log = logging.getLogger(__name__)

HTML = "text/html"

Row = TypeVar("Row", Post, Thread)
Work = Callable[[Session, "Visit"], web.StreamResponse]


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


class Site:
    """The plumbing of the archive's handlers; `Archive`, `Downloads` and `Account` add
    the pages."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.config = app.config
        self.templates = app.templates
        self.secure = app.config.web.base_url.startswith("https://")

    @property
    def base_url(self) -> str:
        """Where links we mail point: [web] base_url, else where we listen (never the Host
        header a client sends, which would let anyone make us mail links to their site)."""
        web_config = self.config.web
        return web_config.base_url or f"http://{web_config.host}:{web_config.port}"

    def visit(self, session: Session, request: web.Request) -> Visit:
        secret = self.app.secret()
        found = signin.reader(session, secret, request.cookies.get(signin.COOKIE),
                              self.app.clock())
        reader = reading.Reader(found[1], found[0]) if found else reading.Reader()
        return Visit(request, reader, secret, request.cookies.get(signin.CSRF_COOKIE))

    def page(self, visit: Visit, template: str, status: int = 200, **values: Any) -> web.Response:
        body = self.templates.get_template(template).render(visit=visit, **values)
        response = web.Response(text=body, status=status, content_type=HTML)
        self.finish(visit, response)
        return response

    def not_found(self, visit: Visit) -> web.Response:
        return self.page(visit, "web/notfound.html", 404)

    def finish(self, visit: Visit, response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = "private, no-cache"
        if not visit.public:
            response.headers["X-Robots-Tag"] = "noindex, nofollow"
        if visit.new_browser and visit.browser:
            response.set_cookie(signin.CSRF_COOKIE, visit.browser, httponly=True,
                                samesite="Lax", secure=self.secure, path="/")

    async def run(self, request: web.Request, work: Work,
                  writes: bool = False) -> web.StreamResponse:
        """Do a page's database work and rendering in a thread, in one transaction."""

        def go() -> web.StreamResponse:
            self.app.secret()  # made in its own transaction the first time
            opener = self.app.db.session if writes else self.app.db.read
            with opener() as session:
                return work(session, self.visit(session, request))

        try:
            return await asyncio.to_thread(go)
        except SQLAlchemyError as exc:
            log.error("database error on %s %s: %s", request.method, request.path,
                      str(exc.__cause__ or exc).splitlines()[0])
            body = self.templates.get_template("web/unavailable.html").render()
            return web.Response(text=body, status=503, content_type=HTML,
                                headers={"Retry-After": "60", "Cache-Control": "no-store"})

    async def on_list(
        self, request: web.Request,
        work: Callable[[Session, Visit, MailingList], web.StreamResponse],
    ) -> web.StreamResponse:
        """`work` for the list named in the URL if this reader may read it, else the
        sign-in page (nobody signed in) or not found."""

        def guarded(session: Session, visit: Visit) -> web.StreamResponse:
            name = request.match_info["list"]
            ml = get_list(session, paths.list_address(name, self.config.lists.domain))
            if ml is not None and reading.may_read(session, visit.reader, ml):
                visit.public = ml.archive == "public"
                return work(session, visit, ml)
            if visit.reader.address is None:
                return self.page(visit, "web/signin.html", 403, asked=True)
            return self.not_found(visit)

        return await self.run(request, guarded)

    async def on_row(
        self, request: web.Request, model: type[Row], key: int,
        work: Callable[[Session, Visit, MailingList, Row], web.StreamResponse],
    ) -> web.StreamResponse:
        """`work` for the thread or post `key` of a list this reader may read, else the
        page `on_list` shows, or not found (also for another list's row)."""

        def found(session: Session, visit: Visit, ml: MailingList) -> web.StreamResponse:
            row = session.get(model, key)
            if row is None or row.list_id != ml.id:
                return self.not_found(visit)
            return work(session, visit, ml, row)

        return await self.on_list(request, found)

    def name(self, ml: MailingList) -> str:
        return paths.list_name(ml.address, self.config.lists.domain)

    def when(self, moment: datetime | None, ml: MailingList | None = None) -> str:
        if moment is None:
            return ""
        return text.when(moment, ml.timezone if ml else self.config.lists.timezone)


def client_address(request: web.Request) -> str:
    """Who asks, for the rate limit: the peer, or behind a proxy on this machine (a TLS
    proxy in front of us) the address it forwards for; no one else may claim one."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if peer in ("127.0.0.1", "::1") and forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return peer


def number(request: web.Request, key: str) -> int:
    """A number of the path; 0 (which names nothing) beyond what an INTEGER key holds."""
    value = int(request.match_info[key])
    return value if value <= signin.MAX_ID else 0


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def page_number(request: web.Request) -> int:
    value = request.query.get("page", "1")
    return max(1, min(int(value), 100_000)) if value.isdigit() and len(value) < 7 else 1
