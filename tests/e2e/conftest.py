"""The dashboard in a real headless Chromium against a real stack.

The browser is Debian's ``chromium`` (``apt-get install chromium``), driven by Playwright's sync
API; Playwright's own browser downloads are never used. The stack is :class:`LocalStack`: a
private redis-server on a free port, real Celery workers and the real API (never the machine's
shared Redis). When ``CI=true`` these tests fail, rather than skip, if the browser is missing or
cannot start.

Every page opened here is watched: a JavaScript error (``pageerror``) or a ``console.error``
fails the test it happened in. Chromium also logs each HTTP error answer as a console error
("Failed to load resource: ... status of 503"); those are accepted only for the (status, path)
pairs the test declared it provokes with :meth:`PageWatch.expect`.

Screenshots of each step go to ``artifacts/e2e/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cli.stack import LocalStack
from tests.conftest import MakeDataset, refuse_without_services
from tests.integration.conftest import SLOW_DATASET, SLOW_ENV, add_slow_dataset, make_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: A training on it reads for 10 s or more, reporting progress at every chunk, however fast the
#: machine (the stack's TEST_TRAINING_DELAY_SECONDS, see tests/integration/conftest.py).
BIG_DATASET = SLOW_DATASET
#: The server asks for this key on every endpoint that changes state (reads stay open).
API_KEY = "e2e-api-key"
STACK_ENV = {**SLOW_ENV, "API_KEY": API_KEY}
_FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


PLAYWRIGHT_MISSING = "playwright is not installed (pip install -c constraints.txt -e '.[dev]')"


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true: .ci/run must install it")
    pytest.skip(reason)


@dataclass
class PageWatch:
    """JavaScript errors and console errors of one page, since the last check."""

    name: str
    problems: list[str] = field(default_factory=list)
    http_errors: list[tuple[int, str]] = field(default_factory=list)
    expected: set[tuple[int, str]] = field(default_factory=set)

    def attach(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        match = _FAILED_LOAD.search(message.text)
        url = (message.location or {}).get("url", "")
        if match:
            self.http_errors.append((int(match.group(1)), urlsplit(url).path))
        else:
            self.problems.append(f"console error: {message.text} ({url})")

    def expect(self, status: int, path_prefix: str) -> None:
        """This test provokes ``status`` answers from paths starting with ``path_prefix``."""
        self.expected.add((status, path_prefix))

    def check(self) -> list[str]:
        found = list(self.problems)
        for status, path in self.http_errors:
            if not any(status == s and path.startswith(p) for s, p in self.expected):
                found.append(f"unexpected HTTP {status} from {path}")
        self.problems.clear()
        self.http_errors.clear()
        self.expected.clear()
        return [f"{self.name}: {problem}" for problem in found]


_WATCHES: list[PageWatch] = []


@pytest.fixture(autouse=True)
def no_console_errors() -> Iterator[None]:
    """After every test: no JavaScript error on any open page, no unexpected HTTP error."""
    yield
    problems = [problem for watch in _WATCHES for problem in watch.check()]
    assert not problems, "\n".join(problems)


def shot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    refuse_without_services("chromium", "e2e")
    path = shutil.which("chromium")
    if path is None:
        unavailable("Debian's chromium is not installed (apt-get install chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import Error, expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as driver:
        try:
            running = driver.chromium.launch(
                executable_path=chromium_path, args=CHROMIUM_ARGS, timeout=30_000
            )
        except Error as exc:
            unavailable(f"chromium could not start: {exc}")
            raise
        yield running
        running.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, make_dataset: MakeDataset
) -> Iterator[LocalStack]:
    """A stack with a small default dataset and a slow one, that needs an API key to change
    state. Shared by a module's tests, which assume nothing about what the others did to it."""
    running = make_stack(tmp_path_factory.mktemp("e2e"), env=STACK_ENV)
    try:
        add_slow_dataset(running, make_dataset)
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_stack(tmp_path: Path, make_dataset: MakeDataset) -> Iterator[LocalStack]:
    """A stack of the test's own, as :func:`stack` but with nothing trained and no job yet."""
    running = make_stack(tmp_path, env=STACK_ENV)
    try:
        add_slow_dataset(running, make_dataset)
        yield running
    finally:
        running.stop()


def open_page(
    browser: Any, base_url: str, name: str, viewport: dict[str, int], api_key: str | None = None
) -> tuple[Any, Any]:
    """A new tab of its own (own sessionStorage), watched for errors; returns (context, page).
    With ``api_key``, the tab starts as if its user had already entered the key."""
    context = browser.new_context(base_url=base_url, viewport=viewport)
    if api_key is not None:
        context.add_init_script(f"sessionStorage.setItem('rvt.apiKey', {json.dumps(api_key)})")
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = PageWatch(name)
    watch.attach(page)
    _WATCHES.append(watch)
    page.watch = watch
    return context, page


def close_page(context: Any, page: Any) -> None:
    problems = page.watch.check()
    _WATCHES.remove(page.watch)
    context.close()
    assert not problems, "\n".join(problems)


def load(page: Any) -> None:
    """Open the dashboard and wait until its first reads are done."""
    from playwright.sync_api import expect

    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


@pytest.fixture
def page(browser: Any, stack: LocalStack) -> Iterator[Any]:
    """A desktop tab of the test's own, not yet on the page (the test loads it once the state
    it needs is made), whose user entered the API key already (asking for it has a test of its
    own)."""
    context, tab = open_page(browser, stack.base_url, "desktop", DESKTOP, api_key=API_KEY)
    yield tab
    close_page(context, tab)
