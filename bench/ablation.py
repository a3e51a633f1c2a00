"""Before/after of each change to the prediction path, measured in one run (issue #5).

    .venv/bin/python -m bench.ablation [--base 3d3d9e2] [--duration 5]

Builds copies of this tree in a temporary folder, each with the hot-path files of one stage
(the files of ``--base``, the commit before the work, then each change added in turn), starts
each copy as its own stack (private Redis, workers, API, on free ports) and measures
``GET /healthz`` and single-record ``POST /predict`` with wrk, so every stage is compared with
the floor of the same process in the same run. Reads the base files with ``git show`` (the
repository is not changed). Results: ``bench/results/ablation.json`` and ``ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import bodies
from bench.loadgen import run_wrk
from bench.procstat import CpuMeter
from bench.suite import ROOT, machine, uvicorn_command, wait_http
from cli.stack import PYTHON, LocalStack, api_command, free_port
from shared.data.synthetic import write_synthetic_csv

RESULTS = ROOT / "bench" / "results"
_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "models",
    "data",
    "results",
    "node_modules",
)


def _worker(queue: str, lean: bool) -> list[str]:
    pool = ["--pool", "solo"] if lean else ["-c", "1"]
    return [
        PYTHON, "-m", "celery", "-A", "worker", "worker", "-Q", queue, *pool,
        "-n", f"{queue}-{time.monotonic_ns()}@%h", "--loglevel", "INFO", "--without-gossip",
        "--without-mingle",
    ]  # fmt: skip


#: (name, what changed, files taken from the current tree, prediction worker lean?)
STAGES: list[tuple[str, str, tuple[str, ...], bool]] = [
    ("A", "before: send_task from a sender thread, prefork worker, no gc.freeze", (), False),
    (
        "B",
        "+ lean prediction worker: --pool solo, batch scored in one call, no task events, "
        "no per-task log lines, no ack emulation, gc.freeze after load",
        ("worker/tasks.py", "shared/scoring.py"),
        True,
    ),
    (
        "C",
        "+ API publishes with one LPUSH per batch on a lean RESP connection, "
        "two batches in flight per worker, one timeout timer",
        ("api/celery_clients.py", "api/resp.py"),
        True,
    ),
    (
        "D",
        "+ POST /predict fast path: orjson, one-pass validation and encoding, no FastAPI deps",
        ("api/routes/predict.py",),
        True,
    ),
    (
        "E",
        "+ gc.freeze at the end of the API's start-up",
        ("api/main.py",),
        True,
    ),
]
#: The last stage changes one line: the order in which the routers are included.
ROUTER_ORDER = (
    "api/routes/__init__.py",
    "for module in (train, jobs, predict, datasets, models, health, metrics, dashboard):",
    "for module in (predict, health, train, jobs, datasets, models, metrics, dashboard):",
)
STAGES.append(
    (
        "F",
        "+ routers included with predict and health first (= the current tree)",
        (ROUTER_ORDER[0],),
        True,
    )
)
HOT_FILES = (
    "api/celery_clients.py",
    "api/routes/predict.py",
    "worker/tasks.py",
    "shared/scoring.py",
)


def git_show(base: str, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"{base}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def build_variants(base: str, work: Path) -> dict[str, Path]:
    current = work / "current"
    shutil.copytree(ROOT, current, ignore=_IGNORE)
    variants: dict[str, Path] = {}
    taken: set[str] = set()
    for name, _, files, _ in STAGES:
        taken |= set(files)
        folder = work / name
        shutil.copytree(current, folder)
        for path in HOT_FILES:
            if path not in taken:
                (folder / path).write_text(git_show(base, path))
        if "api/resp.py" not in taken:
            (folder / "api/resp.py").unlink(missing_ok=True)
        routes, before, after = ROUTER_ORDER
        if routes not in taken:
            text = (folder / routes).read_text()
            (folder / routes).write_text(text.replace(after, before))
        if "api/main.py" not in taken:
            main = (folder / "api/main.py").read_text()
            start = main.index("        if owned:\n            # Start-up objects")
            end = main.index("gc.freeze()\n", start) + len("gc.freeze()\n")
            (folder / "api/main.py").write_text(main[:start] + main[end:])
        variants[name] = folder
    return variants


def measure_stage(
    folder: Path, lean: bool, data: Path, work: Path, duration: float
) -> dict[str, Any]:
    stack = LocalStack(
        models_dir=work / f"models-{folder.name}",
        data_dir=data,
        log_dir=work / f"logs-{folder.name}",
        env={"LOG_LEVEL": "WARNING", "DEFAULT_DATASET": "rows_50000.csv"},
        cwd=folder,
    )
    try:
        stack.start_redis()
        stack.launch("worker-training", _worker("training", lean=False))
        stack.launch("worker-prediction", _worker("prediction", lean=lean))
        stack.port = free_port()
        stack.launch("api", api_command(stack.host, stack.port))
        stack.wait_ready(120)
        with httpx.Client(base_url=stack.base_url, timeout=60) as http:
            job_id = http.post("/train", json={}).json()["job_id"]
            while http.get(f"/jobs/{job_id}").json()["status"] not in ("succeeded", "failed"):
                time.sleep(0.1)
        one = bodies.predict_body(1)
        out: dict[str, Any] = {}
        groups = {n: p.popen.pid for n, p in stack.processes.items()}
        for label, path, body, c in (
            ("healthz_c16", "/healthz", None, 16),
            ("predict_c16", "/predict", one, 16),
            ("predict_c1", "/predict", one, 1),
        ):
            url = stack.base_url + path
            run_wrk(url, label=label, connections=c, duration_s=1.5, max_requests=50_000, body=body)
            meter = CpuMeter(groups)
            meter.start()
            result = run_wrk(
                url,
                label=label,
                connections=c,
                duration_s=duration,
                max_requests=300_000,
                body=body,
            )
            cpu = meter.stop()
            out[label] = {
                "rps": round(result.rps, 1),
                "p50_ms": round(result.p50, 3),
                "p99_ms": round(result.p99, 3),
                "errors": result.failed,
                "api_cpu_us_per_request": round(
                    cpu.get("api", 0) / max(1, result.requests) * 1e6, 1
                ),
                "cpu_cores": {
                    k: round(v / result.duration_s, 2) for k, v in cpu.items() if v > 0.01
                },
            }
        return out
    finally:
        stack.stop()


def reference(work: Path, duration: float) -> dict[str, Any]:
    stack = LocalStack(models_dir=work / "models-ref", data_dir=work / "data-ref", cwd=ROOT)
    try:
        port = free_port()
        stack.launch(
            "reference",
            uvicorn_command("bench.reference_app:app", port, "--loop", "asyncio", "--http", "h11"),
        )
        url = f"http://127.0.0.1:{port}/predict"
        wait_http(f"http://127.0.0.1:{port}/docs")
        one = bodies.predict_body(1)
        run_wrk(url, label="ref", connections=16, duration_s=1.5, max_requests=50_000, body=one)
        result = run_wrk(
            url, label="ref", connections=16, duration_s=duration, max_requests=300_000, body=one
        )
        return {
            "rps": round(result.rps, 1),
            "p50_ms": round(result.p50, 3),
            "p99_ms": round(result.p99, 3),
        }
    finally:
        stack.stop()


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Ablation of the prediction path, {results['date']}",
        "",
        f"Each stage adds one change to the one above; every stage is its own stack, measured in "
        f"this run with wrk ({results['duration_s']} s per run after 1.5 s of warm-up). "
        f"Reference app (asyncio + h11), c=16: {results['reference_before']['rps']:,.0f} req/s "
        f"before the stages, {results['reference_after']['rps']:,.0f} after.",
        "",
        "| stage | change | /healthz c=16 req/s | /predict c=16 req/s | % of /healthz | "
        "p99 c=16 ms (/healthz) | p50 c=1 ms | API CPU µs per prediction |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stage in results["stages"]:
        h, p, one = stage["healthz_c16"], stage["predict_c16"], stage["predict_c1"]
        lines.append(
            f"| {stage['name']} | {stage['change']} | {h['rps']:,.0f} | {p['rps']:,.0f} | "
            f"{p['rps'] / h['rps']:.0%} | {p['p99_ms']:.1f} ({h['p99_ms']:.1f}) | "
            f"{one['p50_ms']:.2f} | {p['api_cpu_us_per_request']:.0f} |"
        )
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="3d3d9e2", help="the commit before the work")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rvt-ablation-"))
    try:
        data = work / "data"
        data.mkdir()
        write_synthetic_csv(data / "rows_50000.csv", 50_000, seed=1)
        variants = build_variants(args.base, work)
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(),
            "base": args.base,
            "duration_s": args.duration,
            "reference_before": reference(work, args.duration),
            "stages": [],
        }
        for name, change, _, lean in STAGES:
            measured = measure_stage(variants[name], lean, data, work, args.duration)
            results["stages"].append({"name": name, "change": change, **measured})
            p, h = measured["predict_c16"], measured["healthz_c16"]
            print(
                f"{name}: predict c16 {p['rps']:,.0f} req/s ({p['rps'] / h['rps']:.0%} of healthz "
                f"{h['rps']:,.0f}), p99 {p['p99_ms']:.1f} ms (healthz {h['p99_ms']:.1f}); "
                f"c1 p50 {measured['predict_c1']['p50_ms']:.2f} ms; "
                f"API {p['api_cpu_us_per_request']:.0f} µs/prediction",
                flush=True,
            )
        results["reference_after"] = reference(work, args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "ablation.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
