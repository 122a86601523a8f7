"""The one HTTP server of `serve`'s web role: the archive and the one-click endpoint.

Every answer carries the same protective headers: a Content-Security-Policy that allows no
script at all and only our own style sheet, no framing, no MIME sniffing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from jinja2 import Environment

from listserv.config import Config
from listserv.store.database import Database
from listserv.web.archive import Archive
from listserv.web.unsubscribe import Endpoint

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def protect(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404 and 405
        _protect(exc)
        raise
    _protect(response)
    return response


def _protect(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def application(
    db: Database,
    config: Config,
    templates: Environment,
    clock: Callable[[], datetime],
    on_notice: Callable[[], None] | None = None,
) -> web.Application:
    """`on_notice` wakes the outbox when a sign-in link was queued."""
    endpoint = Endpoint(db, config, templates, clock)
    archive = Archive(db, config, templates, clock, on_notice)
    app = web.Application(client_max_size=16 * 1024, middlewares=[protect])
    add = app.router.add_route
    add("GET", "/", archive.index)
    add("GET", "/style.css", archive.style)
    add("GET", "/signin", archive.signin_form)
    add("POST", "/signin", archive.signin_request)
    add("GET", "/signin/{token}", archive.signin_link)
    add("POST", "/signin/{token}", archive.signin_confirm)
    add("POST", "/signout", archive.signout)
    add("GET", "/u/{token}", endpoint.confirm)
    add("POST", "/u/{token}", endpoint.unsubscribe)
    add("GET", "/{list}/", archive.threads)
    add("GET", "/{list}/search", archive.search)
    add("GET", "/{list}/feed.atom", archive.feed)
    add("GET", r"/{list}/t/{id:\d{1,18}}", archive.thread)
    add("GET", r"/{list}/t/{id:\d{1,18}}.mbox", archive.mbox)
    add("GET", r"/{list}/p/{id:\d{1,18}}", archive.permalink)
    add("GET", r"/{list}/a/{post:\d{1,18}}/{n:\d{1,4}}", archive.attachment)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns the runner (to clean up) and the port actually bound."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]
