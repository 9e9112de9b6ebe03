"""Browser tests' plumbing: Debian's Chromium driven by Playwright, against a live server in the test's loop.

Playwright's sync API runs on a thread of its own (`BrowserThread`): the server runs in the test's event
loop (tests/live_server.py), and the sync API refuses to run inside a running loop. One browser per test
module; each test gets a fresh context (cookies, storage). Never `playwright install`: it downloads
browsers, and these tests use the system's Chromium (`apt-get install chromium`; .ci/run does it).

Screenshots of every page go to test-artifacts/screenshots/ (gitignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asgiref.sync import sync_to_async

from tests.live_server import LIVE_SERVER_APPS, REPO_ROOT, LiveServer, live_server

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
PASSWORD = "browser-test-password-0123"
# Generous: a loaded 2-core CI machine runs the server, the browser and the test in parallel.
TIMEOUT_MS = 20_000

T = TypeVar("T")

# The live-server apps plus what the admin pages render with (templates, sessions, static files).
BROWSER_TEST_APPS = [*LIVE_SERVER_APPS, "django.contrib.admin", "django.contrib.sessions", "django.contrib.messages",
                     "django.contrib.staticfiles", "rest_framework", "drf_spectacular", "drf_spectacular_sidecar"]


def _chromium_missing_reason() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


class BrowserThread:
    """One Chromium, driven from one thread: every Playwright call of the module goes through `run`."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")
        self.playwright: Any = None
        self.browser: Any = None

    def start(self) -> None:
        self.executor.submit(self._start).result()

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        # launch() gives the browser a fresh temporary profile (user-data dir) and removes it on close.
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

    def stop(self) -> None:
        def _stop() -> None:
            if self.browser is not None:
                self.browser.close()
            if self.playwright is not None:
                self.playwright.stop()

        self.executor.submit(_stop).result()
        self.executor.shutdown()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the browser's thread while this loop keeps serving the live server."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: function(*args))


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    reason = _chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    thread = BrowserThread()
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
async def admin_server(transactional_db: None, settings: Any) -> AsyncIterator[LiveServer]:
    """The project's ASGI app on a real socket, plus the apps' static files (served from the finders, as
    Django's own live-server tests do: tests run with DEBUG off and no collectstatic)."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from orchestrator.asgi import application

    # Logins hash a password; the default hasher's 1M rounds would cost seconds of a test's CPU.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    async with live_server(ASGIStaticFilesHandler(application)) as server:
        yield server


async def create_superuser(username: str = "root") -> None:
    from django.contrib.auth.models import User

    await sync_to_async(User.objects.create_superuser)(username, f"{username}@example.com", PASSWORD)


@dataclass
class Tab:
    """A page in a fresh browser context, with the JavaScript errors it raised."""

    context: Any
    page: Any
    errors: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.context.close()


def open_tab(browser: Any, base_url: str) -> Tab:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    tab = Tab(context, page)
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    return tab


def log_in(tab: Tab, username: str, next_path: str) -> None:
    """The admin's own login form, as a person fills it in."""
    page = tab.page
    page.goto(f"/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


def screenshot(tab: Tab, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.page.screenshot(path=str(path), full_page=True)
    return path
