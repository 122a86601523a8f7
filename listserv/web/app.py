"""The one HTTP server of `serve`'s web role: the archive and the one-click endpoint.

Every answer carries the same protective headers: a Content-Security-Policy that allows no
script at all and only our own style sheet, no framing, no MIME sniffing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from listserv.app import App
from listserv.web.account import Account
from listserv.web.archive import Archive
from listserv.web.downloads import Downloads
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


def application(app: App, on_notice: Callable[[], None] | None = None) -> web.Application:
    """`on_notice` wakes the outbox when a sign-in link was queued."""
    endpoint = Endpoint(app)
    archive, downloads, account = Archive(app), Downloads(app), Account(app, on_notice)
    served = web.Application(client_max_size=16 * 1024, middlewares=[protect])
    add = served.router.add_route
    add("GET", "/", archive.index)
    add("GET", "/style.css", archive.style)
    add("GET", "/signin", account.signin_form)
    add("POST", "/signin", account.signin_request)
    add("GET", "/signin/{token}", account.signin_link)
    add("POST", "/signin/{token}", account.signin_confirm)
    add("POST", "/signout", account.signout)
    add("GET", "/u/{token}", endpoint.confirm)
    add("POST", "/u/{token}", endpoint.unsubscribe)
    add("GET", "/{list}/", archive.threads)
    add("GET", "/{list}/search", archive.search)
    add("GET", "/{list}/feed.atom", downloads.feed)
    add("GET", r"/{list}/t/{id:\d{1,18}}", archive.thread)
    add("GET", r"/{list}/t/{id:\d{1,18}}.mbox", downloads.mbox)
    add("GET", r"/{list}/p/{id:\d{1,18}}", archive.permalink)
    add("GET", r"/{list}/a/{post:\d{1,18}}/{n:\d{1,4}}", downloads.attachment)
    return served


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns the runner (to clean up) and the port actually bound."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]
