"""``rvt api ...`` and ``rvt demo``: the runtime half of the contrast, against a running API.

``rvt train`` trains in the foreground; ``rvt api train`` hands the same work to the service,
which answers at once with a job id, and then only watches the job's progress.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar

import httpx
import typer
from rich.progress import Progress
from rich.table import Table

from cli.console import err, fail, out, progress_columns
from shared.data.schema import FEATURE_COLUMNS
from shared.data.synthetic import write_synthetic_csv
from shared.settings import get_settings

api_app = typer.Typer(
    help="Talk to a running service (URL: --url or API_URL).", no_args_is_help=True
)

FINAL = {"succeeded", "failed", "cancelled"}
UrlOption = Annotated[str | None, typer.Option("--url", help="API base URL (default: API_URL).")]


class ApiError(Exception):
    pass


def _client(url: str | None) -> httpx.Client:
    return httpx.Client(base_url=url or get_settings().api_url, timeout=30)


def _call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach the API at {http.base_url}: {exc}") from None
    body: dict[str, Any] = response.json() if response.content else {}
    if response.status_code >= 400:
        error = body.get("error", {})
        raise ApiError(f"{response.status_code} {error.get('code')}: {error.get('message')}")
    return body


def _run(func: Any) -> Any:
    try:
        return func()
    except ApiError as exc:
        fail(str(exc))


def watch_job(http: httpx.Client, job_id: str, show_bar: bool) -> dict[str, Any]:
    """Poll the job (a few times a second) until it ends, drawing its progress."""
    with Progress(*progress_columns(), console=err, transient=True, disable=not show_bar) as bar:
        task = bar.add_task("queued", total=1.0, rows=0)
        while True:
            job = _call(http, "GET", f"/jobs/{job_id}")
            bar.update(
                task,
                completed=job["progress"],
                description=job["stage"] or job["status"],
                rows=job.get("rows_read") or 0,
            )
            if job["status"] in FINAL:
                return job
            time.sleep(0.25)


@api_app.command("train")
def api_train(
    dataset: Annotated[str | None, typer.Option(help="A name from `rvt api datasets`.")] = None,
    c: Annotated[float | None, typer.Option("--C")] = None,
    class_weight: Annotated[str | None, typer.Option(help="none or balanced")] = None,
    max_iter: Annotated[int | None, typer.Option()] = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote")] = True,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Watch the job to its end.")
    ] = True,
    url: UrlOption = None,
) -> None:
    """Submit a training job; the API answers at once, the job runs on a worker."""
    params: dict[str, Any] = {}
    if c is not None:
        params["C"] = c
    if class_weight is not None:
        params["class_weight"] = None if class_weight == "none" else class_weight
    if max_iter is not None:
        params["max_iter"] = max_iter
    body: dict[str, Any] = {"promote": promote, "params": params}
    if dataset:
        body["dataset"] = dataset

    def go() -> None:
        with _client(url) as http:
            started = time.perf_counter()
            submitted = _call(http, "POST", "/train", json=body)
            answered = time.perf_counter() - started
            err.print(
                f"job {submitted['job_id']} queued; POST /train answered in {answered * 1000:.1f} ms"
            )
            if not wait:
                print(json.dumps(submitted))
                return
            job = watch_job(http, submitted["job_id"], sys.stderr.isatty())
            _print_job(job)
            if job["status"] != "succeeded":
                raise typer.Exit(1)

    _run(go)


def _print_job(job: dict[str, Any]) -> None:
    table = Table("field", "value", title=f"job {job['job_id']}")
    for key in ("status", "submitted_at", "started_at", "finished_at"):
        table.add_row(key, str(job.get(key)))
    result = job.get("result") or {}
    if result:
        table.add_row("version", f"{result['version']} (promoted: {result['promoted']})")
        for name in ("roc_auc", "accuracy", "balanced_accuracy", "recall", "log_loss"):
            value = result["metrics"].get(name)
            table.add_row(name, "null" if value is None else f"{value:.4f}")
        table.add_row("training_seconds", f"{result['training_seconds']:.2f}")
        if not result["gate"]["passed"]:
            table.add_row("gate", "; ".join(result["gate"]["reasons"]))
    if job.get("error"):
        table.add_row("error", f"{job['error']['code']}: {job['error']['message']}")
    out.print(table)


@api_app.command("jobs")
def api_jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    url: UrlOption = None,
) -> None:
    """Recent jobs, newest first."""

    def go() -> None:
        with _client(url) as http:
            query: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
            jobs = _call(http, "GET", "/jobs", params=query)["jobs"]
        table = Table("job", "status", "stage", "progress", "submitted", "result / error")
        for job in jobs:
            result = job.get("result") or {}
            error = job.get("error") or {}
            outcome = result.get("version") or error.get("message") or ""
            table.add_row(
                job["job_id"],
                job["status"],
                str(job.get("stage") or ""),
                f"{job['progress']:.0%}",
                job["submitted_at"],
                outcome,
            )
        out.print(table)

    _run(go)


@api_app.command("cancel")
def api_cancel(job_id: str, url: UrlOption = None) -> None:
    """Cancel a queued or running job."""

    def go() -> None:
        with _client(url) as http:
            job = _call(http, "DELETE", f"/jobs/{job_id}")
        err.print(f"cancel requested; job is {job['status']}")

    _run(go)


@api_app.command("models")
def api_models(url: UrlOption = None) -> None:
    """The registry as the service sees it."""

    def go() -> None:
        with _client(url) as http:
            models = _call(http, "GET", "/models")
        print(json.dumps(models, indent=2))

    _run(go)


@api_app.command("predict")
def api_predict(
    age_group: Annotated[str | None, typer.Option(help="e.g. '80+ Years'")] = None,
    sex: Annotated[str | None, typer.Option()] = None,
    current_status: Annotated[str | None, typer.Option()] = None,
    race_ethnicity_combined: Annotated[str | None, typer.Option()] = None,
    hosp_yn: Annotated[str | None, typer.Option()] = None,
    icu_yn: Annotated[str | None, typer.Option()] = None,
    medcond_yn: Annotated[str | None, typer.Option()] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="Predict every row of a CSV with the feature columns."),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Predict from flags (one record) or from a CSV file; prints JSON."""
    if csv_file is not None:
        with csv_file.open(newline="", encoding="utf-8-sig") as fh:
            records = [
                {k: v for k, v in row.items() if k in FEATURE_COLUMNS and v}
                for row in csv.DictReader(fh)
            ]
    else:
        flags = {
            "age_group": age_group,
            "sex": sex,
            "current_status": current_status,
            "race_ethnicity_combined": race_ethnicity_combined,
            "hosp_yn": hosp_yn,
            "icu_yn": icu_yn,
            "medcond_yn": medcond_yn,
        }
        records = [{k: v for k, v in flags.items() if v is not None}]

    def go() -> None:
        with _client(url) as http:
            print(json.dumps(_call(http, "POST", "/predict", json={"records": records}), indent=2))

    _run(go)


class _Sampler:
    """Single-record predictions every ``interval`` seconds, with latency and version."""

    RECORD: ClassVar[dict[str, str]] = {
        "age_group": "70 - 79 Years",
        "hosp_yn": "Yes",
        "medcond_yn": "Yes",
    }

    def __init__(self, base_url: str, interval: float = 0.1) -> None:
        self.base_url, self.interval = base_url, interval
        self.samples: list[tuple[float, float, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = http.post("/predict", json={"records": [self.RECORD]})
                    status = response.status_code
                    version = response.json().get("model_version") if status == 200 else None
                except httpx.HTTPError:
                    status, version = 0, None
                took = time.perf_counter() - started
                self.samples.append((time.monotonic(), took, status, version))
                self._stop.wait(self.interval)


def demo(
    rows: Annotated[int, typer.Option(help="Rows of the dataset the demo trains on.")] = 3_000_000,
    url: UrlOption = None,
) -> None:
    """The contrast, measured on a running stack: POST /train answers in milliseconds while
    the training takes seconds; predictions keep coming from the old version, then from the
    new one once it is promoted."""
    settings = get_settings()
    name = f"demo_{rows}.csv"
    path = settings.data_dir / name
    if not path.exists():
        err.print(f"writing a {rows:,}-row synthetic dataset to {path} (once)...")
        write_synthetic_csv(path, rows, seed=2020)

    def go() -> None:
        with _client(url) as http:
            if _call(http, "GET", "/models")["production"] is None:
                err.print("no production model yet: training a first one on the default dataset")
                first = _call(http, "POST", "/train", json={})
                watch_job(http, first["job_id"], sys.stderr.isatty())
            sampler = _Sampler(str(http.base_url))
            sampler.start()
            time.sleep(1.0)
            started = time.perf_counter()
            submitted = _call(http, "POST", "/train", json={"dataset": name, "params": {"C": 0.5}})
            answered = time.perf_counter() - started
            submitted_at = time.monotonic()
            job = watch_job(http, submitted["job_id"], sys.stderr.isatty())
            finished_at = time.monotonic()
            time.sleep(1.5)
            sampler.stop()
        _print_demo(answered, job, sampler.samples, submitted_at, finished_at)

    _run(go)


def _print_demo(
    answered: float,
    job: dict[str, Any],
    samples: list[tuple[float, float, int, str | None]],
    submitted_at: float,
    finished_at: float,
) -> None:
    result = job.get("result") or {}
    during = [s for s in samples if submitted_at <= s[0] <= finished_at]
    after = [s for s in samples if s[0] > finished_at]

    def p(values: list[float], q: float) -> str:
        if not values:
            return "-"
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f} ms"

    table = Table("what", "measured", title="training off the request path")
    table.add_row("POST /train answered in", f"{answered * 1000:.1f} ms")
    table.add_row(
        "the training itself ran",
        f"{result.get('training_seconds', 0):.2f} s (job {job['status']})",
    )
    table.add_row(
        "predictions during the training",
        f"{len(during)}, failed: {sum(s[2] != 200 for s in during)}",
    )
    latencies = [s[1] for s in during]
    table.add_row("  latency p50 / p99", f"{p(latencies, 0.5)} / {p(latencies, 0.99)}")
    table.add_row("  answered by", ", ".join(sorted({str(s[3]) for s in during})))
    table.add_row(
        "predictions after it",
        f"{len(after)}, answered by {', '.join(sorted({str(s[3]) for s in after}))}",
    )
    if during:
        table.add_row("  median latency during", f"{statistics.median(latencies) * 1000:.1f} ms")
    out.print(table)
