"""``rvt demo``: the contrast, measured on a running service, wherever it runs.

Everything goes through the API, the dataset included: the service may run on another host, so
its DATA_DIR is not this machine's.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import typer
from rich.table import Table

from cli.client import ApiClient, ApiError, Job, default_wait_seconds
from cli.console import err, one_line_errors, out
from cli.options import ApiKeyOption, TimeoutOption, UrlOption
from cli.remote import watch_job
from shared.data.synthetic import write_synthetic_csv
from shared.settings import get_settings

SEED = 2020
#: About 190 MB of CSV: under the server's default MAX_UPLOAD_BYTES (200 MiB), and still a
#: training of several seconds.
DEFAULT_ROWS = 1_500_000


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    seconds: float
    status: int  # 0: no answer
    version: str | None


def demo_dataset(client: ApiClient, rows: int) -> str:
    """The server's name for the demo dataset of ``rows`` rows, uploaded on first use.

    The file depends only on the seed and the row count, so a copy the server already lists
    (uploaded as ``demo_<rows>.csv``, stored as ``demo_<rows>-<suffix>.csv``) is reused rather
    than sent again. The local copy lives in a temporary folder only while it is uploaded.
    """
    stored = re.compile(rf"demo_{rows}-[0-9a-f]+\.csv")
    for info in client.request("GET", "/datasets")["datasets"]:
        if stored.fullmatch(info["name"]):
            err.print(f"using the server's {info['name']}", highlight=False)
            return str(info["name"])
    with tempfile.TemporaryDirectory(prefix="rvt-demo-") as folder:
        path = Path(folder) / f"demo_{rows}.csv"
        err.print(f"writing a {rows:,}-row synthetic dataset (once per server)...")
        write_synthetic_csv(path, rows, seed=SEED)
        size = path.stat().st_size
        err.print(
            f"uploading it to {client.base_url} ({size / 1e6:,.0f} MB)...",
            highlight=False,
            soft_wrap=True,
        )
        try:
            summary = client.upload_dataset(path)
        except ApiError as exc:
            if exc.status == 413:
                raise ApiError(f"{exc}; try fewer --rows", exc.status) from None
            raise
    return str(summary["name"])


class Sampler:
    """Single-record predictions every ``interval`` seconds, each with its latency and the
    version that answered, until :meth:`stop` or ``max_seconds``."""

    RECORD: ClassVar[dict[str, str]] = {
        "age_group": "70 - 79 Years",
        "hosp_yn": "Yes",
        "medcond_yn": "Yes",
    }

    def __init__(self, client: ApiClient, max_seconds: float, interval: float = 0.1) -> None:
        self.client, self.max_seconds, self.interval = client, max_seconds, interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = self.client.send(
                    "POST", "/predict", timeout=5.0, json={"records": [self.RECORD]}
                )
                status = response.status_code
                version = response.json().get("model_version") if status == 200 else None
            except (ApiError, ValueError):
                status, version = 0, None
            took = time.perf_counter() - started
            self.samples.append(Sample(time.monotonic(), took, status, version))
            self._stop.wait(self.interval)


@one_line_errors
def demo(
    rows: Annotated[
        int, typer.Option(min=1, help="Rows of the dataset the demo uploads and trains on.")
    ] = DEFAULT_ROWS,
    timeout: TimeoutOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The contrast, measured on a running service: POST /train answers in milliseconds while
    the training takes seconds; predictions keep coming from the old version, then from the
    new one once it is promoted."""
    wait = default_wait_seconds(get_settings()) if timeout is None else timeout
    with ApiClient(url, api_key) as client:
        name = demo_dataset(client, rows)
        if client.request("GET", "/models")["production"] is None:
            err.print("no production model yet: training a first one on the default dataset")
            first = client.request("POST", "/train", json={})
            err.print(f"job {first['job_id']} queued", highlight=False, soft_wrap=True)
            watch_job(client, first["job_id"], wait)
        # the sampler outlives the training by the 1 s before and the 1.5 s after it
        sampler = Sampler(client.twin(), max_seconds=wait + 10)
        sampler.start()
        try:
            time.sleep(1.0)
            started = time.perf_counter()
            body = {"dataset": name, "params": {"C": 0.5}}
            submitted = client.request("POST", "/train", json=body)
            answered = time.perf_counter() - started
            submitted_at = time.monotonic()
            err.print(f"job {submitted['job_id']} queued", highlight=False, soft_wrap=True)
            job = watch_job(client, submitted["job_id"], wait)
            finished_at = time.monotonic()
            time.sleep(1.5)
        finally:
            sampler.stop()
    print_demo(answered, job, sampler.samples, submitted_at, finished_at)


def latency_text(seconds: list[float]) -> str:
    """p50 / p99 of the latencies, in milliseconds."""
    if not seconds:
        return "- / -"
    if len(seconds) == 1:
        p50 = p99 = seconds[0]
    else:
        cuts = statistics.quantiles(seconds, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    return f"{p50 * 1000:.1f} ms / {p99 * 1000:.1f} ms"


def print_demo(
    answered: float,
    job: Job,
    samples: list[Sample],
    submitted_at: float,
    finished_at: float,
) -> None:
    result = job.get("result") or {}
    during = [s for s in samples if submitted_at <= s.at <= finished_at]
    after = [s for s in samples if s.at > finished_at]
    table = Table("what", "measured", title="training off the request path")
    table.add_row("POST /train answered in", f"{answered * 1000:.1f} ms")
    table.add_row(
        "the training itself ran",
        f"{result.get('training_seconds', 0):.2f} s (job {job['status']})",
    )
    table.add_row(
        "predictions during the training",
        f"{len(during)}, failed: {sum(s.status != 200 for s in during)}",
    )
    table.add_row("  latency p50 / p99", latency_text([s.seconds for s in during]))
    table.add_row("  answered by", ", ".join(sorted({str(s.version) for s in during})))
    table.add_row(
        "predictions after it",
        f"{len(after)}, answered by {', '.join(sorted({str(s.version) for s in after}))}",
    )
    out.print(table)
