"""Both estimators on the default synthetic data, and what serving and explaining them costs.

``.venv/bin/python -m bench.estimators [--rows 200000] [--requests 1000]`` starts its own stack
(a private Redis on a free port, a training worker, a prediction worker, the API; loopback
only), and for each estimator: trains it through ``POST /train`` on the default dataset (200,000
rows, the seed the service uses), prints its held-out metrics, measures in this process what a
prediction worker does when the version loads (``registry.load`` and building the tables:
median of 5), promotes it, and times sequential single-record ``POST /predict`` requests at
c=1, without and with ``"explain": true`` (medians, interleaved so that both see the same
machine). A client in Python, so the absolute latencies include its own cost: compare the two
columns, not these with wrk's in ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cli.stack import LocalStack
from shared.data.store import DEFAULT_SEED
from shared.data.synthetic import write_synthetic_csv
from shared.model.scoring import Scorer
from shared.registry.versions import ModelRegistry

ESTIMATORS = ("logistic_regression", "hist_gradient_boosting")
SEVERE_CASE = {
    "current_status": "Laboratory-confirmed case",
    "sex": "Male",
    "age_group": "80+ Years",
    "race_ethnicity_combined": "White, Non-Hispanic",
    "hosp_yn": "Yes",
    "icu_yn": "Yes",
    "medcond_yn": "Yes",
}
METRICS = ("roc_auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "log_loss")


def train(http: httpx.Client, estimator: str) -> dict[str, Any]:
    submitted = http.post("/train", json={"estimator": estimator, "promote": False})
    submitted.raise_for_status()
    job_id = submitted.json()["job_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = http.get(f"/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            if job["status"] != "succeeded":
                raise SystemExit(f"the {estimator} training ended {job['status']}: {job['error']}")
            return dict(job["result"])
        time.sleep(0.2)
    raise SystemExit(f"the {estimator} training did not end within 600 s")


def compile_seconds(registry: ModelRegistry, version: str) -> tuple[float, float]:
    """What a prediction worker spends on a new version: (load and compile, compile alone: the
    table and the explanations)."""
    total, tables = [], []
    for _ in range(5):
        started = time.perf_counter()
        scorer = Scorer(version, registry.load(version))
        total.append(time.perf_counter() - started)
        tables.append(scorer.compile_seconds)
    return statistics.median(total), statistics.median(tables)


def serve(http: httpx.Client, version: str) -> None:
    http.post(f"/models/{version}/promote", json={"force": True}).raise_for_status()
    deadline = time.monotonic() + 30
    body = {"records": [SEVERE_CASE]}
    while http.post("/predict", json=body).json().get("model_version") != version:
        if time.monotonic() > deadline:
            raise SystemExit(f"{version} was not served within 30 s")
        time.sleep(0.05)


def latencies(http: httpx.Client, requests: int) -> dict[str, float]:
    """p50 and p99 in ms of single-record predictions, plain and explained, interleaved."""
    seen: dict[bool, list[float]] = {False: [], True: []}
    for i in range(requests * 2):
        explain = i % 2 == 1
        started = time.perf_counter()
        response = http.post("/predict", json={"records": [SEVERE_CASE], "explain": explain})
        seen[explain].append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    out = {}
    for explain, values in seen.items():
        values.sort()
        name = "explain" if explain else "plain"
        out[f"{name}_p50"] = statistics.median(values)
        out[f"{name}_p99"] = values[int(len(values) * 0.99) - 1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--out", type=Path, help="also write the figures there (bench/results/estimators-*.json)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rvt-estimators-"))
    (work / "data").mkdir()
    write_synthetic_csv(work / "data" / "synthetic_default.csv", args.rows, seed=DEFAULT_SEED)
    stack = LocalStack(work / "models", work / "data", env={"LOG_LEVEL": "WARNING"})
    rows: list[dict[str, Any]] = []
    try:
        stack.start(timeout=120)
        registry = ModelRegistry(work / "models")
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            for estimator in ESTIMATORS:
                result = train(http, estimator)
                version = result["version"]
                load, tables = compile_seconds(registry, version)
                serve(http, version)
                timing = latencies(http, args.requests)
                rows.append(
                    {"estimator": estimator, "version": version, **result["metrics"],
                     "load_s": load, "tables_s": tables, **timing}
                )  # fmt: skip
    finally:
        stack.stop()
    print(f"\n{args.rows:,} rows of the default synthetic data; {args.requests} requests each")
    print("| estimator | " + " | ".join(METRICS) + " | load + compile | of which tables |")
    print("|---" * (len(METRICS) + 3) + "|")
    for row in rows:
        metrics = " | ".join(f"{row[m]:.4f}" for m in METRICS)
        print(
            f"| {row['estimator']} | {metrics} | {row['load_s'] * 1000:.0f} ms "
            f"| {row['tables_s'] * 1000:.0f} ms |"
        )
    print("\n| estimator | POST /predict c=1 p50 / p99 | with explain p50 / p99 |\n|---|---|---|")
    for row in rows:
        print(
            f"| {row['estimator']} | {row['plain_p50']:.2f} / {row['plain_p99']:.2f} ms "
            f"| {row['explain_p50']:.2f} / {row['explain_p99']:.2f} ms |"
        )
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
                    "rows": args.rows,
                    "requests": args.requests,
                    "estimators": rows,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
