"""Comparing a candidate version with production from the models table, in a real Chromium:
the side-by-side metrics, each difference coloured by the side it favours, and the share of
feature combinations on which the two disagree, as the API computed them."""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import pytest

from cli.stack import LocalStack
from tests.e2e.conftest import API_KEY, PLAYWRIGHT_MISSING, load, shot
from tests.integration.conftest import train_and_wait

if os.environ.get("CI") == "true":  # CI installs it: a missing one must fail, not skip
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING).expect

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TONE = {"b": "delta-better", "a": "delta-worse", "same": "delta-same"}


def test_comparing_a_candidate_with_production_from_the_models_table(
    page: Any, stack: LocalStack
) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=10, headers={"X-API-Key": API_KEY}) as http:
        production = http.get("/models").json()["production"]
        if production is None:
            job = train_and_wait(http)
            assert job["result"]["promoted"], job
            production = job["result"]["version"]
        boosting = {"estimator": "hist_gradient_boosting", "params": {"max_iter": 20}}
        job = train_and_wait(http, {**boosting, "promote": False})
        assert job["status"] == "succeeded", job
        candidate = job["result"]["version"]
        expected = http.get(f"/models/{production}/compare/{candidate}").json()
    found = expected["disagreement"]
    assert 0 < found["combinations"] < found["total"]

    load(page)
    row = page.locator(f'#models-table tbody tr[data-version="{candidate}"]')
    row.get_by_role("button", name=f"Compare {candidate} with production").click()
    result = page.locator("#compare-result")
    expect(result).to_be_visible()
    expect(result).to_have_attribute("data-a", production)
    expect(result).to_have_attribute("data-b", candidate)
    expect(page.locator("#compare-a")).to_have_value(production)
    expect(page.locator("#compare-b")).to_have_value(candidate)
    expect(page.locator("#c-combinations")).to_have_text(
        re.compile(rf"^{found['combinations']:,} of 95,040 \(")
    )
    expect(page.locator("#c-largest-at")).to_have_text(" · ".join(found["largest_at"].values()))

    metrics = page.locator("#compare-metrics tbody tr")
    expect(metrics).to_have_count(len(expected["metrics"]))
    for name, delta in expected["metrics"].items():
        cell = page.locator(f'#compare-metrics tr[data-metric="{name}"] td.delta')
        expect(cell).to_have_attribute("data-better", delta["better"] or "none")
        if delta["better"] in ("a", "b"):
            expect(cell).to_have_class(re.compile(TONE[delta["better"]]))
            colour = cell.evaluate("c => getComputedStyle(c).backgroundColor")
            assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), (name, colour)
    sexes = expected["group_metrics"]["sex"]
    expect(page.locator("#compare-groups tbody tr")).to_have_count(len(sexes))
    shot(page, "15-compare-with-production", full_page=True)

    # any two: the candidate against itself agrees everywhere
    page.select_option("#compare-a", candidate)
    page.click("#compare-submit")
    expect(result).to_have_attribute("data-a", candidate)
    expect(page.locator("#c-combinations")).to_have_text("0 of 95,040 (0.00%)")
    expect(page.locator("#c-largest")).to_have_text("none: they agree everywhere")
