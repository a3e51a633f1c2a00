"""The benchmark suite: every measurement of issue #5 in one run, so the figures compare.

    make bench                      # installs what it needs, then: python -m bench
    .venv/bin/python -m bench --quick --sections service   # a short run while developing

It starts its own stack (``shared.stack.LocalStack``: a private redis-server on a free port, a
training worker, a prediction worker, the API), the bare reference app and the seed's way of
serving beside it, drives them with wrk on loopback (bounded in requests and time), and writes
``bench/results/latest.json``, ``latest.md`` and the PNG figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench import bodies, inprocess, report, scaling
from bench.loadgen import LoadResult, run_wrk, wrk_version
from bench.peers import section as peers
from bench.procstat import CpuMeter, machine_cpu_model
from cli.stack import PYTHON, LocalStack, free_port
from shared.data.synthetic import write_synthetic_csv

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECTIONS = ("service", "training", "inprocess", "scaling", "peers")
#: ``--full``: about the size of the whole CDC file (106M rows in its 2024 release)
FULL_ROWS = 100_000_000
FULL_BYTES_PER_ROW = 129  # the synthetic file's mean, rounded up (643 MB for 5M rows)
#: The during-training window's dataset: the largest training size, this many times over (a
#: training of 10M rows can end inside a window of warm-up and measurement; of 40M, it cannot).
DURING_TRAINING_COPIES = 4
LIBRARIES = (
    "fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "orjson", "celery",
    "kombu", "redis", "numpy", "pandas", "scikit-learn", "joblib",
)  # fmt: skip


@dataclass
class Config:
    duration_s: float = 8.0
    warmup_s: float = 2.0
    max_requests: int = 300_000
    #: rows of the datasets trained through the service (POST /train against its wall time)
    train_sizes: tuple[int, ...] = (50_000, 1_000_000, 10_000_000)
    #: rows of the scaling curve (streaming trainer) and of the in-memory reference fit
    scaling_rows: tuple[int, ...] = (50_000, 200_000, 1_000_000, 3_000_000, 10_000_000)
    inmemory_rows: tuple[int, ...] = (50_000, 200_000, 1_000_000, 2_000_000)
    #: ``--full``: one more point of the scaling curve, the size of the whole CDC file
    full_rows: int | None = None
    train_posts: int = 100
    sections: tuple[str, ...] = SECTIONS

    @classmethod
    def quick(cls, sections: tuple[str, ...]) -> Config:
        return cls(
            duration_s=3.0,
            warmup_s=1.0,
            train_sizes=(50_000, 1_000_000),
            scaling_rows=(50_000, 200_000, 1_000_000),
            inmemory_rows=(50_000, 200_000),
            train_posts=30,
            sections=sections,
        )


def library_versions() -> dict[str, str]:
    versions: dict[str, str] = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    redis_server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    versions["redis-server"] = next(
        (w.split("=", 1)[1] for w in redis_server if w.startswith("v=")), "unknown"
    )
    versions["wrk"] = wrk_version()
    return versions


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": machine_cpu_model(),
        "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "libraries": library_versions(),
    }


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def uvicorn_command(app: str, port: int, *options: str) -> list[str]:
    return [
        PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", *options,
    ]  # fmt: skip


@dataclass
class Bench:
    config: Config
    work: Path
    results: dict[str, Any] = field(default_factory=dict)
    stack: LocalStack | None = None
    urls: dict[str, str] = field(default_factory=dict)

    # -- set-up -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    def dataset(self, rows: int) -> Path:
        """The synthetic dataset of ``rows`` rows in the stack's datasets folder. Every size is
        a prefix of one seeded stream, so the largest is generated once and the others are
        its first lines."""
        path = self.data_dir / f"rows_{rows}.csv"
        if path.exists():
            return path
        biggest = max((*self.config.train_sizes, *self.config.scaling_rows, rows))
        source = self.data_dir / f"rows_{biggest}.csv"
        if not source.exists():
            started = time.perf_counter()
            write_synthetic_csv(source, biggest, seed=1)
            self.results.setdefault("datasets", {})["generate_seconds"] = round(
                time.perf_counter() - started, 2
            )
            self.results["datasets"]["generated_rows"] = biggest
        if path != source:
            with source.open("rb") as src, path.open("wb") as dst:
                for i, line in enumerate(src):
                    dst.write(line)
                    if i == rows:  # header + rows lines
                        break
        return path

    def full_dataset(self, rows: int) -> Path:
        """The ``--full`` file, generated straight into the datasets folder (not copied from a
        larger one): about 128.6 bytes a row, so 12.9 GB for 100M rows."""
        path = self.data_dir / f"rows_{rows}.csv"
        if path.exists():
            return path
        needed = rows * FULL_BYTES_PER_ROW
        free = shutil.disk_usage(self.data_dir).free
        if free < needed * 1.1:
            raise RuntimeError(
                f"--full needs about {needed / 1e9:.1f} GB free in {self.data_dir} for its "
                f"{rows:,}-row file; there are {free / 1e9:.1f} GB"
            )
        started = time.perf_counter()
        write_synthetic_csv(path, rows, seed=1)
        self.results.setdefault("datasets", {})["full"] = {
            "rows": rows,
            "bytes": path.stat().st_size,
            "generate_seconds": round(time.perf_counter() - started, 2),
        }
        return path

    @contextlib.contextmanager
    def running_stack(self) -> Iterator[LocalStack]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stack = LocalStack(
            models_dir=self.work / "models",
            data_dir=self.data_dir,
            log_dir=self.work / "logs",
            env={"LOG_LEVEL": "WARNING", "DEFAULT_DATASET": "rows_50000.csv"},
        )
        self.stack = stack
        try:
            self.dataset(50_000)
            stack.start(timeout=120)
            with httpx.Client(base_url=stack.base_url, timeout=60) as http:
                job = self.train(http, {"dataset": "rows_50000.csv"})
                if job["status"] != "succeeded":
                    raise RuntimeError(f"the first training failed: {job}")
            self.urls["api"] = stack.base_url
            port = free_port()
            stack.launch(
                "reference",
                uvicorn_command(
                    "bench.reference_app:app", port, "--loop", "asyncio", "--http", "h11"
                ),
            )
            self.urls["reference"] = f"http://127.0.0.1:{port}"
            port = free_port()
            model = self.work / "models" / "v1" / "model.joblib"
            stack.launch(
                "seed",
                uvicorn_command(
                    "bench.seed_app:app", port, "--loop", "uvloop", "--http", "httptools"
                ),
                env={"RVT_SEED_MODEL": str(model)},
            )
            self.urls["seed"] = f"http://127.0.0.1:{port}"
            for name in ("reference", "seed"):
                wait_http(self.urls[name] + "/docs")
            yield stack
        finally:
            stack.stop()
            self.stack = None

    def train(self, http: httpx.Client, body: dict[str, Any], timeout: float = 600) -> Any:
        response = http.post("/train", json=body)
        response.raise_for_status()
        return self.wait_job(http, response.json()["job_id"], timeout)

    @staticmethod
    def wait_job(http: httpx.Client, job_id: str, timeout: float = 600) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = http.get(f"/jobs/{job_id}").json()
            if job["status"] in {"succeeded", "failed", "cancelled"}:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s")

    # -- measurements ---------------------------------------------------------------------------

    def load(
        self,
        label: str,
        url: str,
        connections: int,
        body: bytes | None = None,
        records: int = 0,
        duration_s: float | None = None,
    ) -> LoadResult:
        """Warm up, then one measured wrk run, with the CPU each component used."""
        assert self.stack is not None
        duration = duration_s or self.config.duration_s
        common = {"connections": connections, "body": body, "records_per_request": records}
        run_wrk(url, label=label, duration_s=self.config.warmup_s, max_requests=50_000, **common)
        groups = {name: p.popen.pid for name, p in self.stack.processes.items()}
        meter = CpuMeter(groups)
        meter.start()
        result = run_wrk(
            url, label=label, duration_s=duration, max_requests=self.config.max_requests, **common
        )
        cpu = meter.stop()
        result.extra["cpu_s"] = {k: v for k, v in cpu.items() if v > 0.005}
        result.extra["cpu_s"]["wrk"] = result.extra.pop("client_cpu_s")
        ok = "" if not result.failed else f"  ERRORS {result.errors}"
        print(
            f"  {label:<34} c={connections:<3} {result.rps:9.0f} req/s "
            f"{result.records_per_s:11.0f} rec/s  p50 {result.p50:7.2f} ms  "
            f"p99 {result.p99:7.2f} ms{ok}",
            flush=True,
        )
        return result

    def service(self) -> None:
        """Floors, predictions (1, 100, 1,000 records), and the seed's way of serving."""
        api, ref, seed = self.urls["api"], self.urls["reference"], self.urls["seed"]
        one, hundred, thousand = (bodies.predict_body(n) for n in (1, 100, 1000))
        runs: list[LoadResult] = []
        for c in (1, 16):
            runs.append(self.load("healthz", f"{api}/healthz", c))
            runs.append(self.load("reference", f"{ref}/predict", c, one, 1))
            runs.append(self.load("predict_1", f"{api}/predict", c, one, 1))
        for c in (1, 16):
            runs.append(self.load("predict_100", f"{api}/predict", c, hundred, 100))
        for c in (1, 4, 16):
            runs.append(self.load("predict_1000", f"{api}/predict", c, thousand, 1000))
        for c in (1, 16):
            runs.append(self.load("seed", f"{seed}/predict", c, one, 1))
        self.results["service"] = [r.as_dict() for r in runs]

    def during_training(self) -> None:
        """Single-record predictions idle, then while one training runs for the whole window:
        its dataset is the largest one written :data:`DURING_TRAINING_COPIES` times over, and
        the window counts only if the job was running before the warm-up and still is after
        the measurement (``training_busy_throughout``); the job is cancelled after."""
        api = self.urls["api"]
        one = bodies.predict_body(1)
        rows = max(self.config.train_sizes)
        path = self.repeated_dataset(rows, DURING_TRAINING_COPIES)
        out: dict[str, Any] = {"dataset_rows": rows * DURING_TRAINING_COPIES, "runs": []}
        with httpx.Client(base_url=api, timeout=60) as http:
            for c in (1, 16):
                out["runs"].append(
                    self.load("predict_1_idle", f"{api}/predict", c, one, 1).as_dict()
                )
                job_id = http.post("/train", json={"dataset": path.name, "promote": False})
                job_id.raise_for_status()
                job = job_id.json()["job_id"]
                deadline = time.monotonic() + 120
                while http.get(f"/jobs/{job}").json()["status"] != "running":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the training did not start")
                    time.sleep(0.05)
                result = self.load("predict_1_training", f"{api}/predict", c, one, 1)
                after = http.get(f"/jobs/{job}").json()
                result.extra["training_busy_throughout"] = after["status"] == "running"
                result.extra["training_progress_after_window"] = after.get("progress")
                if after["status"] != "running":
                    print(f"  the training ended inside the window: {after['status']}", flush=True)
                out["runs"].append(result.as_dict())
                http.post(f"/jobs/{job}/cancel")
                self.wait_job(http, job)
        self.results["during_training"] = out

    def repeated_dataset(self, rows: int, copies: int) -> Path:
        """The ``rows`` dataset's records written ``copies`` times into one file: a training
        long enough to outlast a measured window, without generating that many rows."""
        path = self.data_dir / f"rows_{rows}_x{copies}.csv"
        if path.exists():
            return path
        source = self.dataset(rows)
        with source.open("rb") as src, path.open("wb") as dst:
            header = src.readline()
            dst.write(header)
            for _ in range(copies):
                src.seek(len(header))
                shutil.copyfileobj(src, dst, 16 << 20)
        return path

    def train_path(self) -> None:
        """POST /train: what the client waits against what the training takes, per size."""
        out: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.urls["api"], timeout=60) as http:
            for rows in self.config.train_sizes:
                name = self.dataset(rows).name
                body = {"dataset": name, "promote": False}
                waits = []
                for _ in range(self.config.train_posts):
                    started = time.perf_counter()
                    response = http.post("/train", json=body)
                    waits.append(time.perf_counter() - started)
                    response.raise_for_status()
                    http.post(f"/jobs/{response.json()['job_id']}/cancel")
                # drain: every job above was cancelled; wait until the worker is idle again
                time.sleep(0.5)
                started = time.perf_counter()
                response = http.post("/train", json=body)
                answered = time.perf_counter() - started
                job = self.wait_job(http, response.json()["job_id"])
                waited = time.perf_counter() - started
                result = job["result"] or {}
                out.append(
                    {
                        "rows": rows,
                        "post_train_ms": report.summary_ms([*waits, answered]),
                        "job_status": job["status"],
                        "job_wall_s": round(waited, 3),
                        "training_seconds": round(result.get("training_seconds", float("nan")), 3),
                        "rows_per_s": round(rows / result["training_seconds"])
                        if result.get("training_seconds")
                        else None,
                    }
                )
                print(f"  POST /train {rows:>10,} rows: {out[-1]}", flush=True)
        self.results["train_path"] = out

    def run(self) -> None:
        sections = self.config.sections
        self.results.update(
            {
                "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "machine": machine(),
                "config": {
                    "client": "wrk (1 thread), keep-alive connections, loopback",
                    "duration_s": self.config.duration_s,
                    "warmup_s": self.config.warmup_s,
                    "max_requests": self.config.max_requests,
                    "sections": list(sections),
                },
            }
        )
        if {"service", "training", "peers"} & set(sections):
            with self.running_stack():
                if "service" in sections:
                    print("service:", flush=True)
                    self.service()
                if "peers" in sections:
                    print("peers (MLServer, BentoML), each alone, interleaved:", flush=True)
                    self.results["peers"] = peers.measure(self)
                if "training" in sections:
                    print("predictions while training:", flush=True)
                    self.during_training()
                    print("POST /train against training time:", flush=True)
                    self.train_path()
        if "inprocess" in sections:
            print("in-process floors:", flush=True)
            self.results["inprocess"] = inprocess.measure(self.dataset(50_000), self.work)
        if "scaling" in sections:
            print("training scaling:", flush=True)
            self.results["scaling"] = scaling.measure(
                self.dataset, self.config.scaling_rows, self.config.inmemory_rows
            )
            if self.config.full_rows:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                print(f"  --full: generating {self.config.full_rows:,} rows ...", flush=True)
                full = scaling.measure(self.full_dataset, (self.config.full_rows,), ())
                self.results["scaling"]["runs"] += full["runs"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, small datasets")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    parser.add_argument("--duration", type=float, help="seconds per measured load run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, data)")
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"add a {FULL_ROWS:,}-row training to the scaling curve (about "
        f"{FULL_ROWS * FULL_BYTES_PER_ROW / 1e9:.1f} GB of disk, generated in the datasets folder)",
    )
    args = parser.parse_args(argv)
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    config = Config.quick(sections) if args.quick else Config(sections=sections)
    if args.duration:
        config.duration_s = args.duration
    if args.full:
        config.full_rows = FULL_ROWS
    work = Path(tempfile.mkdtemp(prefix="rvt-bench-"))
    bench = Bench(config, work)
    started = time.perf_counter()
    try:
        bench.run()
    finally:
        bench.results["bench_seconds"] = round(time.perf_counter() - started, 1)
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(bench.results, indent=2) + "\n")
    report.write(bench.results, args.out)
    print(f"wrote {args.out / 'latest.json'}, latest.md and the figures", flush=True)
