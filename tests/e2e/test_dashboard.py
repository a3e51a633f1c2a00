"""The dashboard, driven like a person would: the empty page and a first training (on a stack
of their own), a slow training watched as it runs while predictions keep answering, the models
and their per-group metrics, a prediction, promoting an older version and rolling back, a
version that failed its gate promoted only with an explicit force, a cancel, uploads, the API
key prompt and the phone-width layout.

Each test has a tab of its own and makes, through the API, the state it starts from (a model in
production, two versions to switch between), so the tests pass alone and in any order. Version
names are read from the API, never assumed.

The stack needs an API key to change state (reads stay open), as a deployment would: the tabs
start with the key already entered, but the API key test's.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cli.stack import LocalStack
from shared.data.schema import FEATURE_COLUMNS, GROUP_COLUMNS, VOCABULARY
from shared.data.synthetic import write_synthetic_csv
from shared.errors import VersionNotFoundError
from shared.registry.versions import ModelRegistry
from tests.conftest import SEVERE_CASE
from tests.e2e.conftest import (
    API_KEY,
    BIG_DATASET,
    DESKTOP,
    PHONE,
    PLAYWRIGHT_MISSING,
    close_page,
    load,
    open_page,
    shot,
)
from tests.integration.conftest import passing_versions, train_and_wait, wait_until
from tests.shared.registry.helper import tiny_model

if os.environ.get("CI") == "true":  # CI installs it: a missing one must fail, not skip
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING).expect

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

FINAL = {"succeeded", "failed", "cancelled"}
RECORD = SEVERE_CASE


def poll(check: Callable[[], Any], timeout: float, message: str, interval: float = 0.05) -> Any:
    return wait_until(check, timeout, interval, message)


def api(stack: LocalStack) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, timeout=10, headers={"X-API-Key": API_KEY})


def model_row(page: Any, version: str) -> Any:
    return page.locator(f'#models-table tbody tr[data-version="{version}"]')


def confirm(page: Any, title: str, ok: str, closes: bool = True) -> None:
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text(title)
    expect(page.locator("#confirm-ok")).to_have_text(ok)
    page.click("#confirm-ok")
    if closes:
        expect(dialog).to_be_hidden()


def predict_until_version(page: Any, version: str, timeout: float = 10) -> None:
    """Prediction workers pick a promotion up within their poll interval: ask until then."""

    def answered_by() -> bool:
        page.click("#predict-submit")
        expect(page.locator("#predict-submit")).to_be_enabled()
        return page.locator("#predict-result").get_attribute("data-version") == version

    poll(answered_by, timeout, f"a prediction answered by {version}", interval=0.2)


def submit_training(page: Any) -> str:
    """Click "Start training"; the new job shows at once (POST /train answers 202 before any
    training happens). Returns its id."""
    before = page.locator("#current-job").get_attribute("data-job")
    page.click("#train-submit")
    return str(
        poll(
            lambda: (
                (page.locator("#current-job").get_attribute("data-job") or before) != before
                and page.locator("#current-job").get_attribute("data-job")
            ),
            10,
            "the new job to show",
        )
    )


def fill_predict_form(page: Any, record: dict[str, str]) -> None:
    for column, value in record.items():
        page.select_option(f"#predict-{column}", value)


def version_of(stack: LocalStack, job_id: str) -> str:
    with api(stack) as http:
        job = http.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    return str(job["result"]["version"])


def promote(stack: LocalStack, version: str) -> None:
    with api(stack) as http:
        response = http.post(f"/models/{version}/promote", json={"force": True})
    assert response.status_code == 200, response.text


# --- the state a test starts from, made through the API ----------------------------------------


@pytest.fixture
def production(stack: LocalStack) -> str:
    """A version in production (a first training makes one if there is none)."""
    with api(stack) as http:
        current = http.get("/models").json()["production"]
        if current is None:
            job = train_and_wait(http)
            assert job["status"] == "succeeded" and job["result"]["promoted"], job
            current = job["result"]["version"]
    return str(current)


@pytest.fixture
def newer_and_older(stack: LocalStack) -> tuple[str, str]:
    """Two versions that passed their gate, the newer one in production."""
    with api(stack) as http:
        newer, older = passing_versions(http, 2)[:2]
    promote(stack, newer)
    return newer, older


# --- the scenario ------------------------------------------------------------------------------


def test_page_is_served_by_the_api_with_everything_from_its_own_origin(
    page: Any, stack: LocalStack
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto("/")
    assert response is not None and response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page).to_have_title(re.compile("runtime-v-training"))
    expect(page.locator("#ready")).to_have_text("ready", timeout=15_000)

    # the drop-downs offer exactly CDC's vocabularies, and age_group must be chosen
    for column in FEATURE_COLUMNS:
        values = page.locator(f"#predict-{column} option").evaluate_all(
            "options => options.map(o => o.value).filter(v => v !== '')"
        )
        assert values == list(VOCABULARY[column]), column
    assert page.locator("#predict-age_group").get_attribute("required") is not None
    # the datasets come from GET /datasets, the training defaults from the API's schema
    expect(page.locator(f'#dataset option[value="{BIG_DATASET}"]')).to_have_count(1)
    datasets = page.locator("#dataset option").evaluate_all("os => os.map(o => o.value)")
    assert {"synthetic_default.csv", BIG_DATASET} <= set(datasets)
    assert page.locator("#dataset").input_value() == "synthetic_default.csv"
    assert float(page.locator("#param-C").input_value()) == 1.0
    assert int(page.locator("#param-max-iter").input_value()) == 1000

    origin = urlsplit(stack.base_url).netloc
    assert requested and all(urlsplit(url).netloc == origin for url in requested), requested
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= DESKTOP["width"], f"the page scrolls sideways at 1280 px: {width}"


def test_from_an_empty_page_to_a_first_model(browser: Any, fresh_stack: LocalStack) -> None:
    """On a stack of its own, so that it really is empty: no model, no job."""
    context, page = open_page(browser, fresh_stack.base_url, "first-model", DESKTOP, API_KEY)
    # before the first model exists, the contrast panel's predictions are refused (503)
    page.watch.expect(503, "/predict")
    try:
        load(page)
        expect(page.locator("#production")).to_have_text("none")
        expect(page.locator("#models-empty")).to_be_visible()
        expect(page.locator("#jobs-empty")).to_be_visible()
        shot(page, "01-empty")

        page.select_option("#dataset", "synthetic_default.csv")
        job_id = submit_training(page)
        expect(page.locator("#current-job")).to_be_visible()
        expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
        expect(page.locator(f'#jobs-table tbody tr[data-job="{job_id}"]')).to_be_visible()
        expect(page.locator("#n-train-answer")).to_contain_text("202 Accepted")
        expect(page.locator("#current-job-status")).to_have_text("succeeded", timeout=60_000)
        expect(page.locator("#current-job-detail")).to_contain_text("v1, promoted")
        expect(page.locator("#production")).to_have_text("v1", timeout=10_000)
        expect(model_row(page, "v1").locator(".production-badge")).to_be_visible()
        row = page.locator("#jobs-table tbody tr").first
        expect(row.locator(".badge")).to_have_text("succeeded")
        expect(row.locator(".col-times")).to_contain_text("finished")
        expect(row.locator(".col-outcome")).to_contain_text("v1, promoted")
        # v1 answered the contrast panel's predictions once it was promoted
        expect(page.locator("#n-takeover")).to_contain_text("v1", timeout=15_000)
        shot(page, "02-first-model")
    finally:
        close_page(context, page)


def test_big_training_shows_progress_while_predictions_keep_answering(
    page: Any, stack: LocalStack, production: str
) -> None:
    """The slow dataset reads for 10 s or more (the stack's TEST_TRAINING_DELAY_SECONDS), and
    the page polls the job 4 times a second: the bar is seen moving on any machine."""
    before = production
    load(page)
    page.select_option("#dataset", BIG_DATASET)
    page.fill("#param-C", "0.5")
    page.select_option("#param-class-weight", "balanced")
    page.fill("#param-max-iter", "300")
    job_id = submit_training(page)

    progress = page.locator("#job-progress")
    status = page.locator("#current-job-status")
    detail = page.locator("#current-job-detail")
    title = page.locator("#current-job-title")
    expect(title).to_contain_text(BIG_DATASET)
    seen: list[tuple[str, float, str]] = []
    screenshot_taken = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = status.text_content() or ""
        value = float(progress.get_attribute("value") or 0)
        text = detail.text_content() or ""
        if not seen or seen[-1] != (state, value, text):
            seen.append((state, value, text))
        if state == "running" and "rows read" in text and not screenshot_taken:
            shot(page, "03-training")  # the first sight of it reading
            screenshot_taken = True
        if state in FINAL:
            break
        time.sleep(0.03)
    assert seen[-1][0] == "succeeded", seen[-8:]

    running = [(value, text) for state, value, text in seen if state == "running"]
    values = [value for value, _ in running]
    assert values == sorted(values), f"the bar went backwards: {values}"
    partial = sorted({value for value in values if 0 < value < 1})
    assert len(partial) >= 3, f"the bar did not advance visibly: {seen}"
    rows = [
        int(m.group(1).replace(",", ""))
        for _, t in running
        if (m := re.search(r"([\d,]+) rows read", t))
    ]
    assert len(set(rows)) >= 3 and rows == sorted(rows), rows
    assert any("reading the CSV" in text for _, text in running)
    assert screenshot_taken, "the training was never seen running"

    # the contrast: predictions kept answering from the old version during the training, then
    # the new one took over
    new = version_of(stack, job_id)
    expect(page.locator("#contrast-panel")).to_have_attribute("data-state", "done", timeout=15_000)
    expect(page.locator("#n-takeover")).to_contain_text(f"{new} at")
    expect(page.locator("#n-takeover")).to_contain_text(f"before: {before}")
    answered = page.locator("#n-predictions").text_content() or ""
    match = re.match(r"(\d+) answered, none failed", answered)
    assert match and int(match.group(1)) >= 3, answered
    legend = page.locator("#latency-legend").text_content() or ""
    assert f"answered by {before}" in legend and f"answered by {new}" in legend, legend
    assert page.locator("#latency-chart circle.dot").count() >= 5
    assert page.locator("#latency-chart .mark.takeover").count() == 1
    expect(page.locator("#n-train-duration")).to_contain_text("in a worker")
    expect(page.locator("#n-training-seconds")).to_have_text(re.compile(r"\d+\.\d\d s"))
    expect(page.locator("#contrast-story")).to_contain_text(f"{new} took over")

    # the form's parameters reached the worker
    with api(stack) as http:
        meta = http.get(f"/models/{new}").json()
    assert meta["dataset"]["name"] == BIG_DATASET
    assert meta["params"]["C"] == 0.5
    assert meta["params"]["class_weight"] == "balanced"
    assert meta["params"]["max_iter"] == 300
    expect(page.locator("#production")).to_have_text(new)
    shot(page, "04-trained")


@pytest.fixture
def balanced(stack: LocalStack) -> str:
    """A version trained with class_weight=balanced, in production."""
    with api(stack) as http:
        job = train_and_wait(http, {"params": {"C": 0.5, "class_weight": "balanced"}})
    assert job["status"] == "succeeded" and job["result"]["promoted"], job
    return str(job["result"]["version"])


def test_models_table_and_metrics_per_group(page: Any, stack: LocalStack, balanced: str) -> None:
    load(page)
    with api(stack) as http:
        listed = http.get("/models").json()
        meta = http.get(f"/models/{balanced}").json()
    rows_of_versions = page.locator("#models-table tbody tr")
    expect(rows_of_versions).to_have_count(len(listed["versions"]))
    versions = rows_of_versions.evaluate_all("rows => rows.map(r => r.dataset.version)")
    assert versions == [v["version"] for v in listed["versions"]]
    assert listed["production"] == balanced
    expect(model_row(page, balanced).locator(".production-badge")).to_be_visible()
    expect(page.locator("#models-table .production-badge")).to_have_count(1)
    summary = next(v for v in listed["versions"] if v["version"] == balanced)
    expect(model_row(page, balanced)).to_contain_text(f"{summary['metrics']['roc_auc']:.3f}")
    expect(model_row(page, balanced).locator(".col-gate")).to_have_text("passed")
    expect(page.get_by_role("button", name=f"Promote {balanced}")).to_be_disabled()

    page.get_by_role("button", name=f"Details of {balanced}").click()
    expect(page.locator("#model-detail-title")).to_have_text(f"{balanced}: metrics per group")
    expect(page.locator("#model-detail-summary")).to_contain_text("class_weight=balanced")
    for column in GROUP_COLUMNS:
        page.select_option("#group-column", column)
        groups = meta["group_metrics"][column]
        rows = page.locator("#group-table tbody tr")
        expect(rows).to_have_count(len(groups))
        assert rows.locator("th").all_text_contents() == list(groups)
        first = next(iter(groups.values()))
        expect(rows.first).to_contain_text(f"{first['rows']:,}")
        recalls = [g["recall"] for g in groups.values() if g["recall"] is not None]
        expect(page.locator("#group-chart rect.bar")).to_have_count(len(recalls))
        shown = "n/a" if first["recall"] is None else f"{first['recall']:.3f}"
        expect(page.locator("#group-chart .bar-row").first).to_contain_text(shown)
    page.select_option("#group-column", "age_group")
    page.select_option("#group-metric", "observed_rate")
    expect(page.locator("#group-caption")).to_contain_text("observed death rate")
    page.locator("#models-panel").scroll_into_view_if_needed()
    shot(page, "05-metrics-per-group")


def test_prediction_form_shows_probability_label_and_version(
    page: Any, stack: LocalStack, production: str
) -> None:
    load(page)
    page.locator("#predict-panel").scroll_into_view_if_needed()
    # age_group is required: the browser refuses the form before any request
    page.select_option("#predict-age_group", "")
    page.click("#predict-submit")
    assert page.eval_on_selector("#predict-age_group", "el => el.validationMessage")
    expect(page.locator("#predict-result")).to_be_hidden()

    fill_predict_form(page, RECORD)
    page.click("#predict-submit")
    expect(page.locator("#predict-version")).to_contain_text(f"computed by {production}")
    with api(stack) as http:
        answer = http.post("/predict", json={"records": [RECORD]}).json()
    expected = answer["predictions"][0]
    assert answer["model_version"] == production
    expect(page.locator("#predict-probability")).to_have_text(
        f"{expected['probability'] * 100:.1f}%"
    )
    expect(page.locator("#predict-label")).to_have_text(f"death_yn: {expected['label']}")

    # "Explain" is ticked by default: one bar per feature, the API's own contributions
    expect(page.locator("#predict-explanation")).to_be_visible()
    with api(stack) as http:
        explained = http.post("/predict", json={"records": [RECORD], "explain": True}).json()
    contributions = explained["predictions"][0]["explanation"]["contributions"]
    shown = page.locator("#explanation-bars .value").evaluate_all(
        "nodes => nodes.map((n) => Number(n.dataset.value))"
    )
    assert shown == pytest.approx([contributions[col] for col in FEATURE_COLUMNS], abs=1e-12)
    expect(page.locator("#explanation-caption")).to_contain_text("baseline")
    assert page.locator("#explanation-bars .bar.up").count() >= 1  # 80+, hospitalised, ICU
    page.locator("#predict-explanation").scroll_into_view_if_needed()
    shot(page, "06-prediction")

    page.uncheck("#predict-explain")
    page.click("#predict-submit")
    expect(page.locator("#predict-explanation")).to_be_hidden()


def test_promoting_an_older_version_switches_predictions_and_rollback_restores(
    page: Any, newer_and_older: tuple[str, str]
) -> None:
    newer, older = newer_and_older
    load(page)
    fill_predict_form(page, RECORD)
    expect(page.locator("#production")).to_have_text(newer)
    page.get_by_role("button", name=f"Promote {older}").click()
    confirm(page, f"Promote {older}?", f"Promote {older}")
    expect(page.locator("#production")).to_have_text(older, timeout=10_000)
    expect(model_row(page, older).locator(".production-badge")).to_be_visible()
    predict_until_version(page, older)
    expect(page.locator("#predict-version")).to_contain_text(f"computed by {older}")
    shot(page, "07-promoted-older")

    # a dismissed confirmation changes nothing
    page.click("#rollback-button")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    expect(page.locator("#production")).to_have_text(older)

    page.click("#rollback-button")
    confirm(page, "Roll back production?", "Roll back")
    expect(page.locator("#production")).to_have_text(newer, timeout=10_000)
    predict_until_version(page, newer)


def test_version_that_failed_its_gate_is_promoted_only_when_forced(
    page: Any, stack: LocalStack, production: str
) -> None:
    load(page)
    page.select_option("#dataset", "synthetic_default.csv")
    page.click("#train-form summary")
    page.fill("#param-min-roc-auc", "0.999")
    job_id = submit_training(page)
    expect(page.locator("#current-job-status")).to_have_text("succeeded", timeout=60_000)
    failed = version_of(stack, job_id)
    page.watch.expect(409, f"/models/{failed}/promote")
    expect(page.locator("#current-job-detail")).to_contain_text(
        f"{failed}, not promoted (gate failed"
    )
    expect(model_row(page, failed).locator(".col-gate")).to_contain_text("failed", timeout=10_000)
    expect(page.locator("#production")).to_have_text(production)
    page.fill("#param-min-roc-auc", "")

    page.get_by_role("button", name=f"Promote {failed}").click()
    confirm(page, f"Promote {failed}?", f"Promote {failed}", closes=False)
    # the API answered 409 gate_failed: the page offers the force explicitly
    expect(page.locator("#confirm-title")).to_have_text(f"{failed} failed its quality gate")
    expect(page.locator("#confirm-body")).to_contain_text("roc_auc")
    shot(page, "08-gate-failed-force")
    expect(page.locator("#production")).to_have_text(production)
    confirm(page, f"{failed} failed its quality gate", "Promote anyway (force)")
    expect(page.locator("#production")).to_have_text(failed, timeout=10_000)

    page.click("#rollback-button")
    confirm(page, "Roll back production?", "Roll back")
    expect(page.locator("#production")).to_have_text(production, timeout=10_000)


def test_cancel_a_running_training(page: Any, stack: LocalStack, production: str) -> None:
    """On the slow dataset, which reads for 10 s or more: cancelled while it reads (with a
    model in production, which the contrast panel's predictions use meanwhile)."""
    with api(stack) as http:
        versions_before = [v["version"] for v in http.get("/models").json()["versions"]]
    load(page)
    page.select_option("#dataset", BIG_DATASET)
    submit_training(page)
    expect(page.locator("#current-job-status")).to_have_text("running", timeout=30_000)
    poll(
        lambda: float(page.locator("#job-progress").get_attribute("value") or 0) > 0.02,
        30,
        "the training to report progress",
    )
    page.click("#cancel-job")
    expect(page.locator("#current-job-status")).to_have_text("cancelled", timeout=20_000)
    expect(page.locator("#current-job-detail")).to_contain_text("cancelled")
    expect(page.locator("#cancel-job")).to_be_hidden()
    row = page.locator("#jobs-table tbody tr").first
    expect(row.locator(".badge")).to_have_text("cancelled")
    expect(row.locator(".col-outcome")).to_contain_text("cancelled")
    with api(stack) as http:
        assert [v["version"] for v in http.get("/models").json()["versions"]] == versions_before
    shot(page, "09-cancelled")


def test_uploads_a_good_csv_and_shows_the_loaders_error_for_a_bad_one(
    page: Any, stack: LocalStack, tmp_path: Path
) -> None:
    page.watch.expect(422, "/datasets")
    load(page)
    bad = b"sex,age_group\nMale,80+ Years\n"
    with api(stack) as http:
        refused = http.post("/datasets", files={"file": ("bad.csv", bad, "text/csv")})
    assert refused.status_code == 422
    error = refused.json()["error"]

    page.locator("#train-panel").scroll_into_view_if_needed()
    page.set_input_files(
        "#upload-file", files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": bad}]
    )
    page.click("#upload-button")
    expect(page.locator("#upload-error")).to_be_visible()
    expect(page.locator("#upload-error")).to_contain_text(f"{error['code']}: {error['message']}")
    shot(page, "10-upload-refused")

    good = tmp_path / "cases.csv"
    write_synthetic_csv(good, 3_000, seed=5)
    page.set_input_files("#upload-file", str(good))
    page.click("#upload-button")
    expect(page.locator("#upload-status")).to_contain_text("Stored as", timeout=20_000)
    expect(page.locator("#upload-error")).to_be_hidden()
    with api(stack) as http:
        names = {d["name"] for d in http.get("/datasets").json()["datasets"]}
    chosen = page.locator("#dataset").input_value()
    assert chosen in names and chosen not in {"synthetic_default.csv", BIG_DATASET}
    expect(page.locator("#upload-status")).to_contain_text(chosen)
    expect(page.locator("#upload-status")).to_contain_text("3,000 rows")


# --- tabs of their own -------------------------------------------------------------------------


def test_api_key_is_asked_once_kept_for_the_tab_and_sent_on_every_request(
    browser: Any, stack: LocalStack, newer_and_older: tuple[str, str]
) -> None:
    """A tab without the key: reading needs none; the first 401 opens the prompt, a refused key
    opens it again, and the accepted one is kept for the tab and sent on every request."""
    newer, older = newer_and_older
    context, tab = open_page(browser, stack.base_url, "api-key", DESKTOP)
    tab.watch.expect(401, "/models/")
    sent: list[tuple[str, str, str | None]] = []
    tab.on(
        "request",
        lambda r: sent.append((r.method, urlsplit(r.url).path, r.headers.get("x-api-key"))),
    )
    dialog = tab.locator("#key-dialog")
    try:
        tab.goto("/")
        expect(tab.locator("body")).to_have_attribute("data-ready", "true")
        expect(tab.locator("#api-key-button")).to_have_text("API key: none")
        expect(tab.locator("#production")).to_have_text(newer)  # reads are open
        expect(dialog).to_be_hidden()

        tab.get_by_role("button", name=f"Promote {older}").click()
        confirm(tab, f"Promote {older}?", f"Promote {older}")
        expect(dialog).to_be_visible()  # the server answered 401
        expect(tab.locator("#key-reason")).to_contain_text("asks for an API key")
        tab.fill("#api-key-input", "not-the-key")
        tab.press("#api-key-input", "Enter")
        expect(tab.locator("#key-reason")).to_contain_text("refused")
        expect(dialog).to_be_visible()
        shot(tab, "11-api-key-prompt")
        tab.fill("#api-key-input", API_KEY)
        tab.click("#key-ok")
        expect(dialog).to_be_hidden()
        expect(tab.locator("#production")).to_have_text(older)
        expect(tab.locator("#api-key-button")).to_have_text("API key: set")
        assert tab.evaluate("sessionStorage.getItem('rvt.apiKey')") == API_KEY

        # kept for the tab: after a reload, changing state asks nothing
        tab.reload()
        expect(tab.locator("body")).to_have_attribute("data-ready", "true")
        sent.clear()
        tab.get_by_role("button", name=f"Promote {newer}").click()
        confirm(tab, f"Promote {newer}?", f"Promote {newer}")
        expect(tab.locator("#production")).to_have_text(newer)
        expect(dialog).to_be_hidden()
        api_calls = [s for s in sent if not s[1].startswith("/static/") and s[1] != "/"]
        assert ("POST", f"/models/{newer}/promote", API_KEY) in api_calls
        assert all(key == API_KEY for _, _, key in api_calls), api_calls
    finally:
        close_page(context, tab)

    # another tab starts without it
    context, other = open_page(browser, stack.base_url, "api-key-other-tab", DESKTOP)
    try:
        other.goto("/")
        expect(other.locator("body")).to_have_attribute("data-ready", "true")
        assert other.evaluate("sessionStorage.getItem('rvt.apiKey')") is None
        expect(other.locator("#api-key-button")).to_have_text("API key: none")
    finally:
        close_page(context, other)


def test_phone_width_layout_labels_and_keyboard_use(
    browser: Any, stack: LocalStack, production: str
) -> None:
    with api(stack) as http:
        versions = len(http.get("/models").json()["versions"])
    context, tab = open_page(browser, stack.base_url, "phone", PHONE)
    try:
        tab.goto("/")
        expect(tab.locator("body")).to_have_attribute("data-ready", "true")
        expect(tab.locator("#production")).to_have_text(production, timeout=10_000)
        expect(tab.locator("#models-table tbody tr")).to_have_count(versions)
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width}"
        unlabelled = tab.evaluate(
            """() => [...document.querySelectorAll('input, select, button, progress')]
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                    && !el.getAttribute('aria-labelledby') && !(el.textContent || '').trim())
                .map(el => el.id || el.outerHTML.slice(0, 80))"""
        )
        assert unlabelled == [], unlabelled
        shot(tab, "12-phone", full_page=True)

        # the prediction form by keyboard alone: choose with the keys, tab to Predict, Enter
        tab.focus("#predict-age_group")
        tab.keyboard.press("End")  # the last age group... then up to "80+ Years"
        tab.keyboard.press("ArrowUp")
        tab.keyboard.press("ArrowUp")
        assert tab.locator("#predict-age_group").input_value() == "80+ Years"
        for _ in range(4):  # race, hospitalised, ICU, conditions
            tab.keyboard.press("Tab")
        tab.keyboard.press("Tab")
        assert tab.evaluate("document.activeElement.id") == "predict-submit"
        tab.keyboard.press("Enter")
        expect(tab.locator("#predict-version")).to_contain_text(f"computed by {production}")
        shot(tab, "13-phone-prediction")
    finally:
        close_page(context, tab)


def test_training_gradient_boosting_from_the_form(page: Any, stack: LocalStack) -> None:
    """The estimator picks which parameters the form shows and sends; the new version says
    which estimator it is."""
    load(page)
    expect(page.locator('fieldset[data-estimator="hist_gradient_boosting"]')).to_be_hidden()
    page.select_option("#param-estimator", "hist_gradient_boosting")
    expect(page.locator('fieldset[data-estimator="logistic_regression"]')).to_be_hidden()
    assert float(page.locator("#param-learning-rate").input_value()) == 0.1
    assert int(page.locator("#param-hgb-max-iter").input_value()) == 100
    page.fill("#param-hgb-max-iter", "30")
    # the hidden estimator's fields are neither checked nor sent
    page.eval_on_selector("#param-C", "el => { el.value = '-1'; }")
    page.click("#train-form summary")
    page.uncheck("#param-promote")
    job_id = submit_training(page)
    with api(stack) as http:
        done = wait_until(
            lambda: (j := http.get(f"/jobs/{job_id}").json())["status"] in FINAL and j,
            60,
            0.2,
            f"job {job_id} to finish",
        )
        assert done["status"] == "succeeded", done
        version = done["result"]["version"]
        metadata = http.get(f"/models/{version}").json()
    assert metadata["estimator"] == "hist_gradient_boosting"
    assert metadata["params"]["max_iter"] == 30
    expect(model_row(page, version)).to_contain_text("gradient boosting", timeout=15_000)
    page.select_option("#param-estimator", "logistic_regression")
    page.fill("#param-C", "1")


def test_models_table_pages_and_deletes_a_version(
    page: Any, stack: LocalStack, production: str
) -> None:
    """More versions than a page (tiny ones, saved straight into the stack's registry, marked
    as failing their gate so no other test picks them): the table pages back and forth, the
    production row cannot be deleted (its button says why), another row can, after a
    confirmation."""
    assert isinstance(stack.models_dir, Path)
    registry = ModelRegistry(stack.models_dir)
    gate = {"passed": False, "reasons": ["e2e paging filler"]}
    fillers = [registry.save_version(tiny_model(i), {"gate": gate}).version for i in range(21)]
    try:
        with api(stack) as http:
            first = http.get("/models").json()
            second = http.get(first["next"]).json()
        load(page)
        rows = page.locator("#models-table tbody tr")
        expect(rows).to_have_count(len(first["versions"]))
        expect(rows.first).to_have_attribute("data-version", fillers[-1])
        expect(page.locator("#models-newer")).to_be_disabled()
        page.click("#models-older")
        expect(rows.first).to_have_attribute("data-version", second["versions"][0]["version"])
        expect(rows).to_have_count(len(second["versions"]))
        kept = page.get_by_role("button", name=f"Delete {production}")
        expect(kept).to_be_disabled()
        expect(kept).to_have_attribute("title", re.compile("serves predictions"))
        shot(page, "15-models-second-page")
        page.click("#models-newer")
        expect(rows.first).to_have_attribute("data-version", fillers[-1])

        victim = fillers[-1]
        page.get_by_role("button", name=f"Delete {victim}").click()
        confirm(page, f"Delete {victim}?", f"Delete {victim}")
        expect(model_row(page, victim)).to_have_count(0)
        expect(rows.first).to_have_attribute("data-version", fillers[-2])
        with api(stack) as http:
            assert http.get(f"/models/{victim}").status_code == 404
        shot(page, "16-models-after-delete")
    finally:
        for name in fillers:
            with contextlib.suppress(VersionNotFoundError):
                registry.delete(name)
