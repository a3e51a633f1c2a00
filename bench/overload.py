"""Overload, measured (issue #10, item 4): single-record ``POST /predict`` at c=16, then at 256
concurrent connections, on one stack in one run.

    .venv/bin/python -m bench.overload                 # 3 interleaved rounds of 10 s phases
    .venv/bin/python -m bench.overload --seconds 5 --rounds 1

Past ``PREDICT_MAX_WAITING`` waiting predictions, the API answers ``503`` with ``Retry-After``
at once. What the 256 connections see depends on what the client does with that header, so
each round runs three phases:

- ``c16``: 16 connections, the reference (no 503 expected);
- ``c256``: 256 connections whose clients honour ``Retry-After`` (a refused connection waits
  that long before its next request), as HTTP clients with a retry policy do;
- ``c256-ignoring``: 256 connections that retry at once, as wrk does. Every connection then
  always has a request outstanding, so the mean time to any answer is 256 / (answers per
  second) whatever the server does (Little's law); shedding keeps the answers coming and the
  timeouts away, not the latency down. Reported for what it shows, not held to the target.

The client is asyncio on raw keep-alive connections (one request at a time per connection),
not wrk: wrk cannot tell a 200's latency from a 503's, nor wait per connection. Latencies are
from the request's first byte written to the response's last byte read; a request with no
answer within ``--timeout`` (2 s, wrk's default) counts as a client timeout. Medians over the
rounds; the ratio of p99s is computed within each round (one stack, one run).

Loopback only: the stack is a :class:`cli.stack.LocalStack` on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from cli.stack import LocalStack
from shared.data.synthetic import write_synthetic_csv
from shared.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
RECORD = {
    "current_status": "Laboratory-confirmed case",
    "sex": "Male",
    "age_group": "80+ Years",
    "race_ethnicity_combined": "White, Non-Hispanic",
    "hosp_yn": "Yes",
    "icu_yn": "Yes",
    "medcond_yn": "Yes",
}
#: (label, connections, honour Retry-After)
PHASES = (("c16", 16, True), ("c256", 256, True), ("c256-ignoring", 256, False))


@dataclass
class PhaseResult:
    label: str
    connections: int
    seconds: float
    ok_ms: list[float] = field(default_factory=list)
    shed_ms: list[float] = field(default_factory=list)
    other: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 2) if values else None

        return {
            "label": self.label,
            "connections": self.connections,
            "ok_per_s": round(len(self.ok_ms) / self.seconds, 1),
            "shed_per_s": round(len(self.shed_ms) / self.seconds, 1),
            "ok_p50_ms": pct(self.ok_ms, 50),
            "ok_p99_ms": pct(self.ok_ms, 99),
            "shed_p50_ms": pct(self.shed_ms, 50),
            "shed_p99_ms": pct(self.shed_ms, 99),
            "other_statuses": {str(k): v for k, v in sorted(self.other.items())},
            "client_timeouts": self.timeouts,
            "connection_errors": self.errors,
        }


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int | None]:
    """(status, Retry-After seconds or None); the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, retry_after = 0, None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"retry-after":
            retry_after = int(value)
    await reader.readexactly(length)
    return status, retry_after


async def _connection(
    port: int, request: bytes, result: PhaseResult, until: float, honour: bool, timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    reader = writer = None
    while loop.time() < until:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), timeout
                )
            except (OSError, TimeoutError):
                result.errors += 1
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        started = time.perf_counter()
        writer.write(request)
        try:
            status, retry_after = await asyncio.wait_for(_read_response(reader), timeout)
        except TimeoutError:
            result.timeouts += 1
            writer.close()
            writer = None
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            writer.close()
            writer = None
            continue
        elapsed_ms = (time.perf_counter() - started) * 1000
        if status == 200:
            result.ok_ms.append(elapsed_ms)
        elif status == 503 and retry_after is not None:
            result.shed_ms.append(elapsed_ms)
            if honour:
                await asyncio.sleep(min(retry_after, max(0.0, until - loop.time())))
        else:
            result.other[status] = result.other.get(status, 0) + 1
    if writer is not None:
        writer.close()


async def run_phase(
    port: int, label: str, connections: int, honour: bool, seconds: float, timeout: float
) -> PhaseResult:
    request = _request(port, json.dumps({"records": [RECORD]}).encode())
    result = PhaseResult(label, connections, seconds)
    until = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(
        *(_connection(port, request, result, until, honour, timeout) for _ in range(connections))
    )
    return result


def _start_stack(work: Path, max_waiting: int) -> LocalStack:
    data = work / "data"
    data.mkdir(parents=True)
    write_synthetic_csv(data / "synthetic_default.csv", 50_000, seed=1)
    stack = LocalStack(
        models_dir=work / "models",
        data_dir=data,
        log_dir=work / "logs",
        env={"LOG_LEVEL": "WARNING", "PREDICT_MAX_WAITING": str(max_waiting)},
    )
    try:
        stack.start(timeout=120)
        _first_model(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def _first_model(stack: LocalStack) -> None:
    """Train and serve a first model, or raise."""
    with httpx.Client(base_url=stack.base_url, timeout=60) as http:
        job_id = http.post("/train", json={}).raise_for_status().json()["job_id"]
        deadline = time.monotonic() + 300
        while (job := http.get(f"/jobs/{job_id}").json())["status"] not in {
            "succeeded",
            "failed",
            "cancelled",
        }:
            if time.monotonic() > deadline:
                raise TimeoutError("the first training did not finish")
            time.sleep(0.1)
        if job["status"] != "succeeded":
            raise RuntimeError(f"the first training failed: {job}")
        deadline = time.monotonic() + 60
        while http.post("/predict", json={"records": [RECORD]}).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("the model is not served")
            time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--timeout", type=float, default=2.0, help="client timeout, seconds")
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=Settings().predict_max_waiting,
        help="PREDICT_MAX_WAITING of the stack (default: the setting's default)",
    )
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency of the API
        pass
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="rvt-overload-") as work:
        stack = _start_stack(Path(work), args.max_waiting)
        try:
            port = int(stack.base_url.rsplit(":", 1)[1])
            asyncio.run(run_phase(port, "warm-up", 16, True, 3.0, args.timeout))
            for number in range(1, args.rounds + 1):
                summaries = {}
                for label, connections, honour in PHASES:
                    phase = asyncio.run(
                        run_phase(port, label, connections, honour, args.seconds, args.timeout)
                    )
                    summaries[label] = phase.summary()
                    print(f"round {number} {json.dumps(summaries[label])}", flush=True)
                rounds.append(summaries)
        finally:
            stack.stop()

    def median(label: str, key: str) -> float | None:
        values = [r[label][key] for r in rounds if r[label][key] is not None]
        return round(statistics.median(values), 2) if values else None

    ratios = [
        r["c256"]["ok_p99_ms"] / r["c16"]["ok_p99_ms"]
        for r in rounds
        if r["c256"]["ok_p99_ms"] and r["c16"]["ok_p99_ms"]
    ]
    keys = ("ok_per_s", "shed_per_s", "ok_p50_ms", "ok_p99_ms", "shed_p99_ms", "client_timeouts")
    report = {
        "predict_max_waiting": args.max_waiting,
        "rounds": rounds,
        "median": {label: {k: median(label, k) for k in keys} for label, _, _ in PHASES},
        "p99_ratio_c256_to_c16": round(statistics.median(ratios), 2) if ratios else None,
        "client_timeouts_total": sum(r[label]["client_timeouts"] for r in rounds for label in r),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overload.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
