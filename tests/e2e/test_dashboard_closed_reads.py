"""The dashboard on a server that closes reads too (``API_KEY_REQUIRED_FOR_READS``): every
request the page makes as it loads answers 401 at once, and the page still asks only once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from cli.stack import LocalStack
from tests.e2e.conftest import API_KEY, DESKTOP, PLAYWRIGHT_MISSING, close_page, open_page, shot
from tests.integration.conftest import make_stack

if os.environ.get("CI") == "true":  # CI installs it: a missing one must fail, not skip
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING).expect

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: Counts how often the key prompt opens, from the page's first script on.
COUNT_PROMPTS = """
window.__keyPrompts = 0;
new MutationObserver(() => {
  const dialog = document.getElementById("key-dialog");
  if (dialog && dialog.open && !dialog.dataset.counted) {
    dialog.dataset.counted = "1";
    window.__keyPrompts += 1;
  } else if (dialog && !dialog.open) {
    delete dialog.dataset.counted;
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["open"] });
"""


@pytest.fixture(scope="module")
def closed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = make_stack(
        tmp_path_factory.mktemp("e2e-closed"),
        env={"API_KEY": API_KEY, "API_KEY_REQUIRED_FOR_READS": "true"},
    )
    yield running
    running.stop()


def test_loading_asks_for_the_key_once_then_fills_the_page(
    browser: Any, closed_stack: LocalStack
) -> None:
    context, tab = open_page(browser, closed_stack.base_url, "closed-reads", DESKTOP)
    for path in ("/datasets", "/jobs", "/models"):
        tab.watch.expect(401, path)
    try:
        context.add_init_script(COUNT_PROMPTS)
        tab.goto("/")
        dialog = tab.locator("#key-dialog")
        expect(dialog).to_be_visible()
        expect(tab.locator("#dataset option")).to_have_count(0)  # nothing could be read yet
        shot(tab, "14-closed-reads-prompt")
        tab.fill("#api-key-input", API_KEY)
        tab.click("#key-ok")
        expect(dialog).to_be_hidden()
        # the requests that were waiting on the prompt went through with the key
        expect(tab.locator("#dataset")).to_have_value("synthetic_default.csv")
        expect(tab.locator("#production")).to_have_text("none")
        expect(tab.locator("#jobs-empty")).to_be_visible()
        expect(tab.locator("#connection")).to_be_hidden()
        assert tab.evaluate("window.__keyPrompts") == 1
    finally:
        close_page(context, tab)
