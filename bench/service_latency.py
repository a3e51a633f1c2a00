"""The service's key latencies on a private stack: POST /train, a training, and single-record
POST /predict at concurrency 1, idle and while a training runs.

    .venv/bin/python bench/service_latency.py [--requests 2000] [--big-rows 5000000]

Everything runs on loopback; request loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from shared.stack import LocalStack
from shared.synthetic import write_synthetic_csv

RECORD = {"age_group": "70 - 79 Years", "sex": "Female", "hosp_yn": "Yes", "medcond_yn": "Yes"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.50) * 1000, 3),
        "p90_ms": round(percentile(values, 0.90) * 1000, 3),
        "p99_ms": round(percentile(values, 0.99) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


def wait_job(http: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job
        time.sleep(0.05)
    raise TimeoutError(job_id)


def timed_predictions(http: httpx.Client, count: int, until: Any = None) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = http.post("/predict", json={"records": [RECORD]})
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        if until is not None and until():
            break
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--trainings", type=int, default=5)
    parser.add_argument("--big-rows", type=int, default=5_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/service_latency.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rvt-bench-"))
    stack = LocalStack(models_dir=work / "models", data_dir=work / "data", log_dir=work / "logs")
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        stack.start(timeout=120)
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            submit, walls = [], []
            for _ in range(args.trainings):
                started = time.perf_counter()
                response = http.post("/train", json={})
                submit.append(time.perf_counter() - started)
                job = wait_job(http, response.json()["job_id"])
                assert job["status"] == "succeeded", job
                walls.append(job["result"]["training_seconds"])
            results["post_train"] = summary_ms(submit[1:])  # the first one writes the dataset
            results["post_train_first_ms"] = round(submit[0] * 1000, 1)
            results["training_default_data_seconds"] = {
                "median": round(statistics.median(walls), 3),
                "runs": [round(w, 3) for w in walls],
                "rows": job["result"]["rows"]["read"],
            }
            timed_predictions(http, 200)  # warm-up
            results["predict_c1_idle"] = summary_ms(timed_predictions(http, args.requests))

            write_synthetic_csv(stack.data_dir / "big.csv", args.big_rows, seed=1)
            job_id = http.post("/train", json={"dataset": "big.csv"}).json()["job_id"]
            while http.get(f"/jobs/{job_id}").json()["status"] != "running":
                time.sleep(0.01)

            def training_over() -> bool:
                return http.get(f"/jobs/{job_id}").json()["status"] != "running"

            during: list[float] = []
            while not training_over() and len(during) < 100_000:
                during += timed_predictions(http, 50)
            results["predict_c1_during_training"] = summary_ms(during)
            big = wait_job(http, job_id)
            results["big_training_seconds"] = big["result"]["training_seconds"]
            results["big_training_rows"] = args.big_rows
    finally:
        stack.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
