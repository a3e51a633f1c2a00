"""``rvt api ...``: the runtime half of the contrast, against a running API.

``rvt train`` trains in the foreground; ``rvt api train`` hands the same work to the service,
which answers at once with a job id, and then only watches the job's progress.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.progress import Progress
from rich.table import Column, Table

from cli.client import ApiClient, Job, default_wait_seconds
from cli.console import err, fmt, one_line_errors, out, progress_columns
from cli.options import (
    ApiKeyOption,
    ClassWeightOpt,
    COpt,
    EstimatorOpt,
    EstimatorOption,
    L2RegularizationOpt,
    LearningRateOpt,
    MaxDepthOpt,
    MaxIterOpt,
    MaxLeafNodesOpt,
    TimeoutOption,
    UrlOption,
    model_params,
)
from shared.data.schema import FEATURE_COLUMNS
from shared.model.evaluation import KEY_METRICS
from shared.settings import get_settings

api_app = typer.Typer(
    help="Talk to a running service (URL: --url or API_URL; key: --api-key or API_KEY).",
    no_args_is_help=True,
)


def watch_job(client: ApiClient, job_id: str, timeout: float | None) -> Job:
    """Follow the job to its end, drawing its progress when stderr is a terminal; gives up
    after ``timeout`` seconds (default: :func:`~cli.client.default_wait_seconds`)."""
    limit = default_wait_seconds(get_settings()) if timeout is None else timeout
    with Progress(
        *progress_columns(), console=err, transient=True, disable=not sys.stderr.isatty()
    ) as bar:
        task = bar.add_task("queued", total=1.0, rows=0)

        def draw(job: Job) -> None:
            bar.update(
                task,
                completed=job["progress"],
                description=job["stage"] or job["status"],
                rows=job.get("rows_read") or 0,
            )

        return client.wait_for_job(job_id, limit, draw)


@api_app.command("train")
@one_line_errors
def api_train(
    dataset: Annotated[str | None, typer.Option(help="A name from `rvt api datasets`.")] = None,
    estimator: EstimatorOpt = EstimatorOption.logistic_regression,
    c: COpt = None,
    class_weight: ClassWeightOpt = None,
    max_iter: MaxIterOpt = None,
    learning_rate: LearningRateOpt = None,
    max_leaf_nodes: MaxLeafNodesOpt = None,
    max_depth: MaxDepthOpt = None,
    l2_regularization: L2RegularizationOpt = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote")] = True,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Watch the job to its end.")
    ] = True,
    timeout: TimeoutOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Submit a training job; the API answers at once, the job runs on a worker."""
    params = model_params(
        c, class_weight, max_iter, learning_rate, max_leaf_nodes, max_depth, l2_regularization
    )
    body: dict[str, Any] = {"estimator": estimator.value, "promote": promote, "params": params}
    if dataset:
        body["dataset"] = dataset
    with ApiClient(url, api_key) as client:
        started = time.perf_counter()
        submitted = client.request("POST", "/train", json=body)
        answered = time.perf_counter() - started
        err.print(
            f"job {submitted['job_id']} queued; POST /train answered in {answered * 1000:.1f} ms",
            highlight=False,
            soft_wrap=True,  # one line even in a pipe: scripts take the job id from it
        )
        if not wait:
            print(json.dumps(submitted))
            return
        job = watch_job(client, submitted["job_id"], timeout)
    print_job(job)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def print_job(job: Job) -> None:
    table = Table("field", "value", title=f"job {job['job_id']}")
    for key in ("status", "submitted_at", "started_at", "finished_at"):
        table.add_row(key, str(job.get(key)))
    result = job.get("result") or {}
    if result:
        table.add_row("version", f"{result['version']} (promoted: {result['promoted']})")
        for name in KEY_METRICS:
            table.add_row(name, fmt(result["metrics"].get(name)))
        table.add_row("training_seconds", f"{result['training_seconds']:.2f}")
        if not result["gate"]["passed"]:
            table.add_row("gate", "; ".join(result["gate"]["reasons"]))
    if job.get("error"):
        table.add_row("error", f"{job['error']['code']}: {job['error']['message']}")
    out.print(table)


@api_app.command("jobs")
@one_line_errors
def api_jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Recent jobs, newest first."""
    query: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    with ApiClient(url, api_key) as client:
        jobs = client.request("GET", "/jobs", params=query)["jobs"]
    # whole ids even on a narrow terminal or a pipe: they are what `rvt api cancel` takes
    id_width = max((len(job["job_id"]) for job in jobs), default=3)
    table = Table(
        Column("job", no_wrap=True, min_width=id_width),
        "status",
        "stage",
        "progress",
        "submitted",
        "result / error",
    )
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


@api_app.command("cancel")
@one_line_errors
def api_cancel(job_id: str, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Cancel a queued or running job (POST /jobs/{id}/cancel): a queued one ends at once, a
    running one at its worker's next progress report."""
    with ApiClient(url, api_key) as client:
        job = client.request("POST", f"/jobs/{quote(job_id, safe='')}/cancel")
    err.print(f"cancel requested; job is {job['status']}", highlight=False)


@api_app.command("datasets")
@one_line_errors
def api_datasets(url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """The datasets the service can train on (names for `rvt api train --dataset`)."""
    with ApiClient(url, api_key) as client:
        listing = client.request("GET", "/datasets")
    name_width = max((len(info["name"]) for info in listing["datasets"]), default=4)
    table = Table(
        Column("name", no_wrap=True, min_width=name_width),  # whole: `--dataset` takes it
        "size",
        "modified",
        title=f"default: {listing['default']}",
    )
    for info in listing["datasets"]:
        table.add_row(info["name"], f"{info['size_bytes']:,}", info["modified_at"])
    out.print(table)


@api_app.command("upload")
@one_line_errors
def api_upload(
    csv_file: Annotated[Path, typer.Argument(help="A CSV with the CDC columns.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload a dataset; prints the server's summary, with the name to train on."""
    with ApiClient(url, api_key) as client:
        summary = client.upload_dataset(csv_file)
    print(json.dumps(summary, indent=2))


@api_app.command("models")
@one_line_errors
def api_models(
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Only the newest N versions (default: every one)."),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The registry as the service sees it: production, its history and the versions, newest
    first, following the API's pages."""
    with ApiClient(url, api_key) as client:
        models = client.request("GET", "/models")
        versions = list(models.get("versions", []))
        following, seen = models.get("next"), set()
        while following and following not in seen and (limit is None or len(versions) < limit):
            seen.add(following)  # a page that points back at itself must not loop forever
            page = client.request("GET", following)
            versions += page.get("versions", [])
            following = page.get("next")
    listing = {
        key: value for key, value in models.items() if key not in {"limit", "next", "next_cursor"}
    }
    print(json.dumps({**listing, "versions": versions[:limit]}, indent=2))


@api_app.command("predict")
@one_line_errors
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
    api_key: ApiKeyOption = None,
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
    with ApiClient(url, api_key) as client:
        answer = client.request("POST", "/predict", json={"records": records})
    print(json.dumps(answer, indent=2))


@api_app.command("compare")
@one_line_errors
def api_compare(
    a: Annotated[str, typer.Argument(help="A version, e.g. the one serving.")],
    b: Annotated[str, typer.Argument(help="Another version (or the same), e.g. a candidate.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Two versions side by side (GET /models/A/compare/B): metrics with their differences
    (b - a) and where their predictions disagree; prints JSON."""
    with ApiClient(url, api_key) as client:
        found = client.request("GET", f"/models/{quote(a, safe='')}/compare/{quote(b, safe='')}")
    print(json.dumps(found, indent=2))
