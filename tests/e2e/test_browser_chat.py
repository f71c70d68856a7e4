"""The example blog in a real browser: Playwright drives Debian's chromium (headless).

The blog runs as a user runs it (``aiosite run`` in a subprocess, on a fresh copy of the
project and its SQLite database, migrated and seeded with the demo accounts), and two
browser contexts (two fresh profiles: two people) log in as ada and grace, open the same
chat room and each sees the other's message. Then: a room's page reconnects after the
server restarts and loads what it missed, and two open tabs show the banner of a post
published meanwhile. The pages run with the site's Content-Security-Policy enforced
(debug off), and any script error or refused script fails the test.

``make browser`` (which ``make test`` runs) installs chromium; without it these tests are
skipped, or fail under AIOSITE_REQUIRE_SERVICES=1 (CI). Screenshots go to
``test-artefacts/browser/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_run import clean_env, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "blog"
CHROMIUM = Path(os.environ.get("AIOSITE_CHROMIUM", "/usr/bin/chromium"))
ARTEFACTS = ROOT / "test-artefacts" / "browser"
AIOSITE = Path(sys.executable).parent / "aiosite"
# The demo accounts' password (blogsite/blog/fixtures/demo.yaml).
PASSWORD = "aiosite-demo"  # noqa: S105 - the public demo accounts'
ROOM = "e2e-room"
# Milliseconds a page may take to show what another page did.
SEEN_WITHIN = 10_000
# Milliseconds a page may take to reconnect after a restart: chat.js's longest backoff
# (15 s) and the server's start.
RECONNECTED_WITHIN = 30_000


def _chromium() -> Path:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"Debian's chromium is not installed at {CHROMIUM}: run `make browser` (as root)"
    if os.environ.get("AIOSITE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; AIOSITE_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options: Debian's chromium (Playwright's own browser
    downloads are not used), headless, without the sandbox (containers and CI runners
    rarely allow its namespaces)."""
    return {
        **browser_type_launch_args,
        "executable_path": str(_chromium()),
        "headless": True,
        "args": ["--no-sandbox"],
    }


class Blog:
    """A copy of the example blog, migrated and seeded, served by ``aiosite run`` (in
    development settings as ``make demo`` has them, but with debug off: the
    Content-Security-Policy is enforced, not only reported, and no toolbar is injected)."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.database = project / "var" / "db.sqlite3"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = project / "server.log"
        self.env = clean_env(AIOSITE_DEBUG__ENABLED="false")
        self.server: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> None:
        done = subprocess.run(
            [str(AIOSITE), *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.server = server = subprocess.Popen(
                [str(AIOSITE), "run", "--no-reload", "--port", str(self.port)],
                cwd=self.project,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/chat/", timeout=5) as resp:  # noqa: S310
                    assert resp.status == 200
                return
            except OSError:
                assert server.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.2)

    def stop(self) -> None:
        """As a deploy stops it: SIGTERM, which closes every websocket (1001) first."""
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGTERM)
            assert self.server.wait(timeout=20) == 0, self.log.read_text()
            self.server = None


@pytest.fixture(scope="module")
def blog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blog]:
    _chromium()  # no server for tests that will be skipped
    project = tmp_path_factory.mktemp("browser") / "blog"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("var", "__pycache__"))
    served = Blog(project)
    served.command("db", "migrate")
    served.command("db", "seed", "blogsite/blog/fixtures/demo.yaml")
    served.start()
    try:
        yield served
    finally:
        served.stop()
    output = served.log.read_text()
    assert "Traceback" not in output, output


class Person:
    """One browser profile (a context of its own: its own cookies), logged in or not."""

    def __init__(self, browser: Browser, base: str, name: str) -> None:
        self.name = name
        self.context = browser.new_context(base_url=base)
        # A script the Content-Security-Policy blocks, or one that throws, shows here.
        self.errors: list[str] = []
        self.page = self.new_tab()

    def new_tab(self) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: self.errors.append(msg.text) if msg.type == "error" else None,
        )
        return page

    def log_in(self, next_path: str) -> None:
        page = self.page
        page.goto(f"/auth/login?next={next_path}")
        page.get_by_label("Username").fill(self.name)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"**{next_path}")

    def say(self, text: str) -> None:
        message = self.page.get_by_role("textbox", name="Message")
        message.fill(text)
        message.press("Enter")

    def screenshot(self, test: str, step: str) -> None:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTEFACTS / f"{test}-{step}-{self.name}.png"), full_page=True)

    def errors_besides_lost_connections(self) -> list[str]:
        """The errors, without the browser's reports of connections refused (the
        websocket's and the event stream's, expected while the server is down)."""
        return [e for e in self.errors if "ERR_CONNECTION_REFUSED" not in e]

    def close(self) -> None:
        self.context.close()


OpenProfile = Callable[[str], Person]


@pytest.fixture
def profile(browser: Browser, blog: Blog) -> Iterator[OpenProfile]:
    """``profile("ada")``: a new browser profile on the blog, closed after the test."""
    made: list[Person] = []

    def open_profile(name: str) -> Person:
        made.append(Person(browser, blog.base, name))
        return made[-1]

    yield open_profile
    for person in made:
        person.close()


def test_two_people_chat_in_the_same_room(profile: OpenProfile) -> None:
    ada, grace = profile("ada"), profile("grace")
    room = f"/chat/{ROOM}"
    for person in (ada, grace):
        person.log_in(room)
        expect(person.page.locator(".chat-status")).to_have_attribute(
            "data-state", "live", timeout=SEEN_WITHIN
        )
        expect(person.page.locator(".chat-form")).to_be_visible()

    ada.say("Hello from ada")
    grace_log = grace.page.locator(".chat-log")
    expect(grace_log.locator(".chat-message", has_text="Hello from ada")).to_contain_text(
        "ada", timeout=SEEN_WITHIN
    )
    grace.say("Hi ada, grace here")
    ada_log = ada.page.locator(".chat-log")
    expect(ada_log.locator(".chat-message", has_text="Hi ada, grace here")).to_contain_text(
        "grace", timeout=SEEN_WITHIN
    )
    # Each message once, in order, on both pages (a page's own message comes back to it
    # through the hub like everybody else's).
    for log in (ada_log, grace_log):
        expect(log.locator(".chat-text")).to_have_text(
            ["Hello from ada", "Hi ada, grace here"], timeout=SEEN_WITHIN
        )
    ada.screenshot("chat", "talked")
    grace.screenshot("chat", "talked")

    # The messages are stored: a page opened later (or reconnecting) shows them, and a
    # visitor who is not logged in reads them but gets no form.
    visitor = profile("visitor")
    visitor.page.goto(room)
    expect(visitor.page.locator(".chat-status")).to_have_attribute(
        "data-state", "live", timeout=SEEN_WITHIN
    )
    expect(visitor.page.locator(".chat-text")).to_have_text(
        ["Hello from ada", "Hi ada, grace here"]
    )
    expect(visitor.page.locator(".chat-form")).to_have_count(0)
    expect(visitor.page.locator(".chat-login")).to_contain_text("Log in")
    visitor.screenshot("chat", "visitor")
    for person in (ada, grace, visitor):
        assert person.errors == [], f"{person.name}'s page: {person.errors}"


def test_open_pages_hear_of_a_new_post(profile: OpenProfile) -> None:
    grace, ada = profile("grace"), profile("ada")
    # Grace reads the blog in two tabs. One of them reads the event stream (live.js
    # marks it once the stream is open: the server has subscribed by then) and relays
    # the posts to the other, which opens no stream of its own.
    grace.page.goto("/blog/")
    expect(grace.page.locator("html")).to_have_attribute("data-live", "open", timeout=SEEN_WITHIN)
    second_tab = grace.new_tab()
    second_tab.goto("/")
    expect(second_tab.locator("html")).to_have_attribute("data-live", "relayed")
    expect(grace.page.locator(".live-banner")).to_have_count(0)

    ada.log_in("/blog/new")
    ada.page.get_by_label("Title", exact=True).fill("Live from the browser test")
    ada.page.get_by_label("Text", exact=True).fill("Published while grace was reading.")
    ada.page.get_by_label("Published", exact=True).check()
    ada.page.get_by_role("button", name="Save").click()
    ada.page.wait_for_url("**/blog/live-from-the-browser-test")

    for page in (grace.page, second_tab):
        banner = page.locator(".live-banner")
        expect(banner).to_contain_text("New post: Live from the browser test", timeout=SEEN_WITHIN)
        expect(banner.locator("a")).to_have_attribute("href", "/blog/live-from-the-browser-test")
    grace.screenshot("posts", "banner")
    banner.get_by_role("button", name="Dismiss").click()
    expect(banner).to_have_count(0)
    # The tab that read the stream closes: the other takes over.
    grace.page.close()
    expect(second_tab.locator("html")).to_have_attribute("data-live", "open", timeout=SEEN_WITHIN)
    for person in (ada, grace):
        assert person.errors == [], f"{person.name}'s page: {person.errors}"


def test_a_room_page_reconnects_and_reloads_the_last_messages(
    blog: Blog, profile: OpenProfile
) -> None:
    ada = profile("ada")
    room = "/chat/reconnecting"
    ada.log_in(room)
    status = ada.page.locator(".chat-status")
    expect(status).to_have_attribute("data-state", "live", timeout=SEEN_WITHIN)
    ada.say("Before the restart")
    expect(ada.page.locator(".chat-text")).to_have_text(["Before the restart"])

    # A deploy: the server goes away, and while it is down a message lands in the
    # database (written by another process, say) that the page never heard of.
    blog.stop()
    expect(status).to_have_attribute("data-state", "offline", timeout=SEEN_WITHIN)
    expect(status).to_contain_text("trying again")
    with sqlite3.connect(blog.database) as database:
        database.execute(
            "INSERT INTO chat_message (room, author_id, text) "
            "SELECT 'reconnecting', id, 'While you were away' FROM auth_user "
            "WHERE username = 'grace'"
        )
    ada.screenshot("reconnect", "offline")
    blog.start()

    # The page comes back by itself (backoff: at most MAX_DELAY seconds after the
    # restart) and shows the room's last messages again, the missed one included.
    expect(status).to_have_attribute("data-state", "live", timeout=RECONNECTED_WITHIN)
    expect(ada.page.locator(".chat-text")).to_have_text(
        ["Before the restart", "While you were away"]
    )
    ada.say("After the restart")
    expect(ada.page.locator(".chat-text")).to_have_text(
        ["Before the restart", "While you were away", "After the restart"],
        timeout=SEEN_WITHIN,
    )
    ada.screenshot("reconnect", "back")
    assert ada.errors_besides_lost_connections() == [], ada.errors
