"""The archive against hostile posts and forged links: a post's text and subject render
inert, sign-in links work once within the hour, sessions end at sign-out, and nothing of a
members-only list leaks to a signed-out request."""

from __future__ import annotations

import re
from typing import Any

from listserv.server import Server
from listserv.web.app import SECURITY_HEADERS

from .conftest import LIST, Clock, Sink, make_message
from .web import Client, sign_in, signin_link

HOSTILE_SUBJECT = '<script>alert("subject")</script> {{ 7*7 }} {% raw %}'
HOSTILE_BODY = """Look at this:
<script>alert("body")</script>
<img src=x onerror=alert(1)>
<a href="javascript:alert(2)">click</a> javascript:alert(3)
{{ config }} {{ 6*7 }} {% if true %}jinja{% endif %}
https://example.net/a?b=1&c="><script>alert(4)</script>
"""


def public(cli: Any) -> None:
    assert cli("lists", "set", LIST, "--archive", "public").exit_code == 0


def test_a_hostile_post_renders_inert(als: str, cli: Any, post: Any, web_server: Server) -> None:
    public(cli)
    html_post = make_message(
        "Mallory <alice@example.org>", HOSTILE_SUBJECT, HOSTILE_BODY, message_id="evil@example.org"
    )
    assert post(html_post).code == 250
    reader = Client(web_server.web_port)
    for path in (
        "/living-with-als/",
        "/living-with-als/t/1",
        "/living-with-als/search?q=script",
        "/living-with-als/feed.atom",
    ):
        page = reader.get(path)
        assert page.status == 200, path
        for name, value in SECURITY_HEADERS.items():
            assert page.headers[name] == value
        html = page.text
        assert "<script" not in html.lower(), path
        assert "<img" not in html, path
        assert 'href="javascript' not in html.lower(), path
        assert "{{ 7*7 }}" in html and ">jinja<" not in html, path  # shown as written
    page = reader.get("/living-with-als/t/1").text
    assert "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt; {{ 7*7 }}" in page
    assert "{{ config }} {{ 6*7 }} {% if true %}jinja{% endif %}" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # The one real link becomes an <a>, cut at the quote, and marked as user content.
    links = re.findall(r'<a href="([^"]*)" rel="([^"]*)">', page)
    assert ("https://example.net/a?b=1&amp;c=", "nofollow ugc noopener") in links
    assert "default-src 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src" not in SECURITY_HEADERS["Content-Security-Policy"]


def test_an_attachment_is_always_a_download(
    als: str, cli: Any, post: Any, web_server: Server
) -> None:
    public(cli)
    msg = make_message(
        "Alice Archer <alice@example.org>",
        "Exercise plan",
        "Attached.",
        message_id="plan@example.org",
    )
    msg.add_attachment(
        b"<script>alert(1)</script>", maintype="text", subtype="html", filename="pl\u00e4n.html"
    )
    assert post(msg).code == 250
    reader = Client(web_server.web_port)
    page = reader.get("/living-with-als/t/1").text
    assert '<a href="/living-with-als/a/1/1">pl\u00e4n.html</a> (25 bytes)' in page
    download = reader.get("/living-with-als/a/1/1")
    assert download.status == 200
    assert download.body == b"<script>alert(1)</script>"
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert reader.get("/living-with-als/a/1/2").status == 404


def test_sign_in_links_are_refused_when_forged_expired_or_used_twice(
    als: str, post: Any, drain: Any, sink: Sink, clock: Clock, web_server: Server
) -> None:
    reader = Client(web_server.web_port)
    form = reader.get("/signin")
    reader.post("/signin", {"csrf": form.csrf(), "address": "bob@example.net"})
    drain()
    path = signin_link(sink, "bob@example.net")
    ident = path.split("-")[1]
    forged = [
        path[:-3] + "aaa",
        f"/signin/s-{ident}-zzzzzz-aaaaaaaaaaaaaaaa",
        "/signin/u-1-0-aaaaaaaaaaaaaaaa",
        "/signin/nonsense",
        "/signin/s-99999999999999-zzzzzz-aaaaaaaaaaaaaaaa",
    ]
    for bad in forged:
        page = reader.get(bad)
        assert page.status == 400 and "cannot be used" in page.text, bad
        assert (
            reader.post(bad, {"csrf": page.csrf() if "csrf" in page.text else form.csrf()}).status
            == 400
        ), bad
    # Without the form's CSRF token the button does nothing.
    assert reader.post(path, {"csrf": "x"}).status == 400
    button = reader.get(path)
    assert reader.post(path, {"csrf": button.csrf()}).status == 303
    again = Client(web_server.web_port)
    assert again.get(path).status == 400
    assert again.post(path, {"csrf": again.get("/signin").csrf()}).status == 400

    # A link opened after its hour is refused.
    form = reader.get("/signin")
    reader.post("/signin", {"csrf": form.csrf(), "address": "dave@example.org"})
    drain()
    late = signin_link(sink, "dave@example.org")
    clock.advance(minutes=61)
    late_reader = Client(web_server.web_port)
    assert late_reader.get(late).status == 400
    assert late_reader.post(late, {"csrf": late_reader.get("/signin").csrf()}).status == 400


def test_the_sign_in_page_says_the_same_to_everyone_and_limits_the_mail(
    als: str, drain: Any, sink: Sink, web_server: Server
) -> None:
    reader = Client(web_server.web_port)
    answers = set()
    for address in ("bob@example.net", "nobody@example.com", "not an address"):
        form = reader.get("/signin")
        page = reader.post("/signin", {"csrf": form.csrf(), "address": address})
        assert page.status == 200
        answers.add(re.sub(r'name="csrf" value="[^"]+"', "", page.text))
    assert len(answers) == 1
    drain()
    assert sink.recipients() == ["bob@example.net"]
    # Per address: three links an hour, then the page still says the same and mails nothing.
    for _ in range(3):
        reader.post("/signin", {"csrf": reader.get("/signin").csrf(), "address": "bob@example.net"})
    drain()
    assert sink.recipients().count("bob@example.net") == 3
    # Per client: ten requests an hour, whatever the addresses.
    for i in range(6):
        reader.post(
            "/signin", {"csrf": reader.get("/signin").csrf(), "address": f"someone{i}@example.com"}
        )
    reader.post("/signin", {"csrf": reader.get("/signin").csrf(), "address": "dave@example.org"})
    drain()
    assert "dave@example.org" not in sink.recipients()


def test_behind_a_local_proxy_each_forwarded_client_has_its_own_limit(
    als: str, drain: Any, sink: Sink, web_server: Server
) -> None:
    reader = Client(web_server.web_port)
    for i in range(12):  # more than one client may ask in an hour
        reader.post(
            "/signin",
            {"csrf": reader.get("/signin").csrf(), "address": f"someone{i}@example.com"},
            {"X-Forwarded-For": "192.0.2.1"},
        )
    reader.post(
        "/signin",
        {"csrf": reader.get("/signin").csrf(), "address": "dave@example.org"},
        {"X-Forwarded-For": "192.0.2.2"},
    )
    reader.post(
        "/signin",
        {"csrf": reader.get("/signin").csrf(), "address": "bob@example.net"},
        {"X-Forwarded-For": "192.0.2.1"},
    )
    drain()
    assert sink.recipients() == ["dave@example.org"]


def test_the_session_cookie_is_protected_and_signing_out_ends_it(
    als: str, drain: Any, sink: Sink, config_data: dict[str, Any], web_server: Server
) -> None:
    reader = Client(web_server.web_port)
    done = sign_in(reader, sink, drain, "bob@example.net")
    cookie = done.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=2592000" in cookie
    assert "Secure" not in cookie  # no https base_url in this test
    session = reader.cookie("listserv_session")
    assert session is not None and reader.get("/living-with-als/").status == 200

    # A cookie made up or altered is worth nothing.
    thief = Client(web_server.web_port)
    altered = session.value[:-1] + ("1" if session.value.endswith("0") else "0")
    for value in (altered, "1-" + "0" * 32, "garbage", "99999999999-" + "0" * 32):
        thief.jar.clear()
        thief.jar.set_cookie(_copy(session, value))
        assert thief.get("/living-with-als/").status == 403
    thief.jar.set_cookie(_copy(session, session.value))
    assert thief.get("/living-with-als/").status == 200

    home = reader.get("/living-with-als/")
    out = reader.post("/signout", {"csrf": home.csrf()})
    assert out.status == 303
    assert reader.get("/living-with-als/").status == 403
    assert thief.get("/living-with-als/").status == 403  # the copied cookie ended too


def _copy(cookie: Any, value: str) -> Any:
    import copy

    made = copy.copy(cookie)
    made.value = value
    return made


def test_an_html_post_is_shown_as_its_text(
    als: str, cli: Any, post: Any, web_server: Server
) -> None:
    public(cli)
    msg = make_message(
        "Alice Archer <alice@example.org>",
        "Styled",
        "plain part dropped",
        message_id="html@example.org",
    )
    msg.set_content(
        "<p>Massage <b>helps</b>.<script>alert(1)</script>"
        '<img src="https://tracker.example/x.gif" onerror="alert(2)"></p>',
        subtype="html",
    )
    assert post(msg).code == 250
    page = Client(web_server.web_port).get("/living-with-als/t/1").text
    assert "Massage helps." in page
    assert "<b>" not in page and "<script" not in page and "tracker.example" not in page
