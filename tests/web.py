"""A small HTTP client for the web stories: cookies kept like a browser's, redirects shown
rather than followed, every answer returned (also 4xx)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

from .conftest import Sink


@dataclass
class Page:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def csrf(self) -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert match is not None, self.text
        return match[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Client:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def get(self, path: str) -> Page:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> Page:
        data = urllib.parse.urlencode(form).encode()
        return self._open(
            urllib.request.Request(
                self.base + path, data=data, method="POST", headers=headers or {}
            )
        )

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self.opener.open(request, timeout=10) as response:
                return Page(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:
            return Page(exc.code, exc.headers, exc.read())

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((c for c in self.jar if c.name == name), None)


def signin_link(sink: Sink, address: str) -> str:
    """The path of the latest sign-in link mailed to `address`."""
    messages = [m for m in sink.to(address) if "sign in" in str(m["Subject"]).lower()]
    assert messages, f"no sign-in mail for {address}"
    match = re.search(r"https?://[^/\s]+(/signin/[a-z0-9-]+)", messages[-1].get_content())
    assert match is not None, messages[-1].get_content()
    return match[1]


def sign_in(client: Client, sink: Sink, drain: object, address: str) -> Page:
    """Ask for a link, read it from the mail, open it and press "Sign in"."""
    form = client.get("/signin")
    sent = client.post("/signin", {"csrf": form.csrf(), "address": address})
    assert sent.status == 200, sent.text
    drain()  # type: ignore[operator]
    path = signin_link(sink, address)
    button = client.get(path)
    assert button.status == 200, button.text
    return client.post(path, {"csrf": button.csrf()})
