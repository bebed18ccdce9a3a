"""Browser fixtures: the app served on loopback, driven by Debian's Chromium through Playwright.

The live server serves the session ``app`` of tests/conftest.py, so a test and the pages it
opens share one database (rows a test makes with ``create_user`` are there for the browser,
and ``clean_state`` empties them after). Each pytest(-xdist) worker starts one Chromium and
reuses it; every test gets a fresh browser context (no cookies carried over).

Only Debian's Chromium is used (``/usr/bin/chromium``, or ``CHROMIUM_PATH``): never run
``playwright install``. Without it the tests skip, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.conftest import need

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
#: How long a step may wait for the page before the test fails (milliseconds).
STEP_TIMEOUT_MS = 10_000


def chromium_available() -> bool:
    """Debian's Chromium is installed and can be run."""
    path = Path(CHROMIUM_PATH)
    return path.is_file() and os.access(path, os.X_OK)


class QuietRequestHandler(WSGIRequestHandler):
    """The live server's requests are not logged: a failing test shows its own story."""

    def log_request(self, *args, **kwargs) -> None:
        pass


@pytest.fixture(scope="session")
def live_server(app):
    """The app served on 127.0.0.1 at a free port, in a daemon thread; yields its base URL."""
    # threaded: the browser fetches the page, its CSS and its scripts at the same time.
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class SharedChromium:
    """One Playwright driver and one Chromium per process, however many conftests ask.

    Other folders' conftests import these fixtures, which makes a second copy of each
    session fixture; Playwright's sync API cannot be started twice in one process, so the
    copies share one driver and browser, and the last copy to finish closes them.
    """

    users = 0
    playwright = None
    browser = None

    @classmethod
    def acquire(cls):
        if cls.browser is None:
            from playwright.sync_api import sync_playwright

            cls.playwright = sync_playwright().start()
            try:
                cls.browser = cls.playwright.chromium.launch(
                    executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True
                )
            except BaseException:
                cls.playwright.stop()
                cls.playwright = None
                raise
        cls.users += 1
        return cls.browser

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0:
            cls.browser.close()
            cls.playwright.stop()
            cls.browser = cls.playwright = None


@pytest.fixture(scope="session")
def playwright_driver():
    """Playwright's sync API with Chromium launched, once per worker (if Chromium is there)."""
    need("Chromium", chromium_available(), f"no executable Chromium at {CHROMIUM_PATH}")
    SharedChromium.acquire()
    yield SharedChromium.playwright
    SharedChromium.release()


@pytest.fixture(scope="session")
def browser(playwright_driver):
    """One headless Chromium per worker, reused by every test of that worker."""
    return SharedChromium.browser


@pytest.fixture
def page(browser, live_server):
    """A page in a fresh browser context (no cookies) whose relative URLs go to the app.

    Any style sheet, script, image or font the page fails to load, and any script error,
    fails the test: a page that looks or behaves broken is broken.
    """
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and not message.text.startswith("Failed to load resource")
            and problems.append(f"console error: {message.text}")
        ),
    )
    # ERR_ABORTED is the browser dropping what it was still fetching when the test moved on
    # to the next page; a file that is missing shows up as its 404 below instead.
    page.on(
        "requestfailed",
        lambda request: (
            request.failure != "net::ERR_ABORTED"
            and problems.append(f"request failed: {request.url} ({request.failure})")
        ),
    )
    page.on(
        "response",
        lambda response: (
            response.request.resource_type != "document"
            and response.status >= 400
            and problems.append(f"{response.status} for {response.url}")
        ),
    )
    yield page
    context.close()
    assert not problems, "the pages did not load cleanly:\n" + "\n".join(problems)
