"""Signing in and out, the pages: ask for a link, open it, press the button, sign out.
What they decide (tokens, rate limits, sessions) is `signin`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from sqlalchemy.orm import Session

from listserv.app import App
from listserv.web import signin
from listserv.web.site import Site, Visit, client_address, see_other

log = logging.getLogger(__name__)


class Account(Site):
    def __init__(self, app: App, on_notice: Callable[[], None] | None) -> None:
        super().__init__(app)
        self.on_notice = on_notice  # wakes the outbox, which sends a queued link now

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
                session, self.config, self.templates, visit.secret,
                address if isinstance(address, str) else "", client, self.base_url,
                self.app.clock(),
            )
            if sent:
                log.info("sign-in link queued (request from %s)", client)
            return self.page(visit, "web/signin_sent.html")

        response = await self.run(request, work, writes=True)
        if self.on_notice is not None:
            self.on_notice()
        return response

    async def signin_link(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            if signin.check_link(session, visit.secret, token, self.app.clock()) is None:
                return self.page(visit, "web/signin_refused.html", 400)
            return self.page(visit, "web/signin_confirm.html")

        return await self.run(request, work)

    async def signin_confirm(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        form = await request.post()

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            if not signin.csrf_ok(visit.secret, visit.browser, form.get("csrf")):
                return self.page(visit, "web/expired.html", 400)
            signed = signin.sign_in(session, visit.secret, token, self.app.clock())
            if signed is None:
                return self.page(visit, "web/signin_refused.html", 400)
            response = see_other("/")
            self.finish(visit, response)
            response.set_cookie(signin.COOKIE, signed.cookie, httponly=True, samesite="Lax",
                                secure=self.secure, path="/",
                                max_age=signin.SESSION_DAYS * 86400)
            return response

        return await self.run(request, work, writes=True)

    async def signout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()

        def work(session: Session, visit: Visit) -> web.StreamResponse:
            if not signin.csrf_ok(visit.secret, visit.browser, form.get("csrf")):
                return self.page(visit, "web/expired.html", 400)
            if visit.reader.session_id is not None:
                signin.sign_out(session, visit.reader.session_id, self.app.clock())
            response = see_other("/")
            self.finish(visit, response)
            response.del_cookie(signin.COOKIE, path="/")
            return response

        return await self.run(request, work, writes=True)
