"""The small HTTP endpoint behind List-Unsubscribe: one-click unsubscribe (RFC 8058).

`POST /u/TOKEN` with `List-Unsubscribe=One-Click` unsubscribes at once: mail providers send
it without cookies or login, and may send it twice. `GET /u/TOKEN` never changes anything,
because link scanners fetch every URL in a message; it shows a page whose button POSTs.
Every token we cannot honour gets the same 404 page, which names nothing. The pages name
the list, never the address: a forwarded link must not tell its reader who is a member.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from aiohttp import web
from jinja2 import Environment
from sqlalchemy.exc import SQLAlchemyError

from listserv.config import Config
from listserv.store.database import Database
from listserv.store.settings import token_secret
from listserv.web import oneclick

log = logging.getLogger(__name__)

ONE_CLICK = ("List-Unsubscribe", "One-Click")
HTML = "text/html"


class Endpoint:
    def __init__(self, db: Database, config: Config, templates: Environment,
                 clock: Callable[[], datetime]) -> None:
        self.db = db
        self.config = config
        self.templates = templates
        self.clock = clock

    def page(self, name: str, status: int = 200, **values: object) -> web.Response:
        body = self.templates.get_template(name).render(**values)
        return web.Response(text=body, status=status, content_type=HTML,
                            headers={"Cache-Control": "no-store",
                                     "Referrer-Policy": "no-referrer"})

    def _look(self, token: str) -> oneclick.Target | None:
        with self.db.session() as session:
            return oneclick.resolve(session, token, self.clock(),
                                    token_secret(session, self.config))

    def _act(self, token: str) -> tuple[oneclick.Result, oneclick.Target | None]:
        with self.db.session() as session:
            return oneclick.one_click(session, token, self.clock(),
                                      token_secret(session, self.config))

    async def confirm(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        try:
            target = await asyncio.to_thread(self._look, token)
        except SQLAlchemyError as exc:
            log.error("database error on GET unsubscribe: %s", exc)
            return self.page("unsubscribe_unavailable.html", 503)
        if target is None:
            return self.page("unsubscribe_refused.html", 404)
        return self.page("unsubscribe_confirm.html", list_title=target.list_title,
                         list_address=target.list_address,
                         subscribed=target.member is not None)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        form = await request.post()
        if form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
            return self.page("unsubscribe_bad_request.html", 400)
        try:
            result, target = await asyncio.to_thread(self._act, token)
        except SQLAlchemyError as exc:
            log.error("database error on POST unsubscribe: %s", exc)
            return self.page("unsubscribe_unavailable.html", 503)
        if target is None:
            return self.page("unsubscribe_refused.html", 404)
        log.info("one-click %s: %s from %s", result.value, target.address, target.list_address)
        return self.page("unsubscribe_done.html", list_title=target.list_title,
                         list_address=target.list_address)

