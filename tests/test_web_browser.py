"""The archive in a real browser (Debian's Chromium driven by Playwright), checked with
axe-core on every page and photographed on a phone and a desktop.

One browser serves the whole session (starting one costs more than all the page loads).
Without Chromium or Playwright these tests skip with the reason, except under CI=true,
where they fail: CI must never pass by skipping the browser.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from listserv.server import Server

from .conftest import LIST, Sink
from .test_web_pages import seed_thread
from .web import signin_link

CHROMIUM = os.environ.get("LISTSERV_TEST_CHROMIUM", "/usr/bin/chromium")
# Controls that are not links inside running text (which WCAG exempts) must be 44x44 px.
SMALL_TARGETS = """[...document.querySelectorAll(
    'button, summary, input, nav a, a.row, a.button, .crumb a, .thread-end a, .post header a,'
    + ' ul.files a')]
  .filter(e => { const r = e.getBoundingClientRect();
                 return r.width > 0 && (r.height < 44 || r.width < 44); })
  .map(e => e.outerHTML.slice(0, 80))"""
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


def _missing() -> str | None:
    try:
        import axe_playwright_python  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    if shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    why = _missing()
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run under CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The browser stories read pages; the database behaviour is covered by the HTTP tests."""
    return f"sqlite:///{tmp_path / 'listserv.db'}"


class Check:
    """Every page a story visits: no serious or critical axe-core violation, no sideways
    scrolling on a phone, and a screenshot at each size under the test's output folder."""

    def __init__(self, page: Any, folder: Path) -> None:
        from axe_playwright_python.sync_playwright import Axe

        self.page = page
        self.folder = folder
        self.axe = Axe()

    def __call__(self, name: str) -> None:
        page = self.page
        results = self.axe.run(page)
        bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {[n['html'] for n in v['nodes']][:3]}" for v in bad
        )
        for label, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            page.screenshot(path=str(self.folder / f"{name}-{label}.png"), full_page=True)
        page.set_viewport_size({"width": 360, "height": 740})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            f"{name} scrolls sideways at 360 px"
        )
        assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 16, name
        small = page.evaluate(SMALL_TARGETS)
        assert not small, f"{name}: targets under 44x44 px at 360 px: {small}"
        page.set_viewport_size(VIEWPORTS["desktop"])


@pytest.fixture
def tab(browser: Any, tmp_path: Path) -> Iterator[tuple[Any, Check]]:
    context = browser.new_context(viewport=VIEWPORTS["desktop"])
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield page, Check(page, folder)
    context.close()
    # No third-party requests, ever.
    assert all(re.match(r"(http://127\.0\.0\.1:\d+/|mailto:)", url) for url in requests), requests


def test_a_member_signs_in_reads_expands_searches_and_replies(
    als: str, post: Any, drain: Any, sink: Sink, web_server: Server, tab: tuple[Any, Check]
) -> None:
    page, check = tab
    seed_thread(post)
    drain()
    base = f"http://127.0.0.1:{web_server.web_port}"
    page.goto(base + "/")
    check("lists-signed-out")
    page.get_by_role("link", name="Sign in", exact=True).click()
    check("sign-in")
    page.get_by_label("Your email address").fill("carol@example.com")
    page.get_by_role("button", name="Email me a link").click()
    assert page.get_by_role("heading", name="Check your mail").is_visible()
    check("sign-in-sent")

    drain()
    page.goto(base + signin_link(sink, "carol@example.com"))
    check("sign-in-confirm")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Living with ALS").click()
    assert page.get_by_text("Started by Alice Archer · 2 members · 1 reply").is_visible()
    check("threads")

    page.get_by_role("link", name=re.compile("Does massage therapy help")).click()
    assert page.get_by_role("heading", level=1).inner_text().startswith("Does massage therapy help")
    assert page.locator(".thread-end").get_by_text("2 members · 1 reply").is_visible()
    quoted = page.locator("details .quoted")
    assert not quoted.is_visible()
    # With the keyboard alone: focus "Show quoted text" and press Enter.
    page.locator("summary").focus()
    page.keyboard.press("Enter")
    assert quoted.is_visible() and "Does massage therapy help" in quoted.inner_text()
    check("thread")
    reply = page.get_by_role("link", name="Reply by email")
    assert reply.get_attribute("href").startswith(
        "mailto:living-with-als+t1@lists.example.org?subject=Re%3A%20Does%20massage"
    )

    page.get_by_role("link", name="Living with ALS").click()
    page.get_by_label("Search this list").fill("massage")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=massage$"))
    result = page.get_by_role("link", name=re.compile("Does massage therapy help"))
    assert result.count() == 2  # the question and the answer, best first
    assert page.locator("mark").first.inner_text().lower() == "massage"
    check("search")
    result.first.click()
    assert "/living-with-als/t/1" in page.url


def test_a_stranger_sees_only_the_sign_in_page(
    als: str, post: Any, web_server: Server, tab: tuple[Any, Check]
) -> None:
    page, check = tab
    seed_thread(post)
    base = f"http://127.0.0.1:{web_server.web_port}"
    for path in ("/living-with-als/", "/living-with-als/t/1"):
        response = page.goto(base + path)
        assert response.status == 403
        assert page.get_by_role("heading", name="Sign in").is_visible()
        assert "massage" not in page.content().lower()
    check("members-only")


def test_a_public_list_is_readable_signed_out(
    als: str, post: Any, cli: Any, web_server: Server, tab: tuple[Any, Check]
) -> None:
    page, check = tab
    seed_thread(post)
    assert cli("lists", "set", LIST, "--archive", "public").exit_code == 0
    page.goto(f"http://127.0.0.1:{web_server.web_port}/")
    page.get_by_role("link", name="Living with ALS").click()
    check("threads-public")
    page.get_by_role("link", name=re.compile("Does massage therapy help")).click()
    assert page.get_by_text("It helped me a lot").is_visible()
    check("thread-public")
