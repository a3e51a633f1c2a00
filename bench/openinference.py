"""The Open Inference Protocol's route against ``POST /predict`` (issue #13, item 5): one record
per request, 16 connections, on one stack in one run.

    .venv/bin/python -m bench.openinference                 # 5 interleaved rounds of 10 s
    .venv/bin/python -m bench.openinference --seconds 3 --rounds 2

Each round runs three phases, one after the other, on the same stack and the same model:

- ``predict``: ``POST /predict`` with one record (the reference);
- ``v2-json``: ``POST /v2/models/death_yn/infer`` with the seven inputs as JSON tensors of
  shape ``[1]``, JSON outputs;
- ``v2-binary``: the same in Triton's binary tensor format both ways, what ``tritonclient``
  sends by default (``Inference-Header-Content-Length``).

Both routes take the same path behind the body (the batching client, the same prediction
worker, the same table), so the difference is what each costs the API process per request.
The client is :mod:`bench.overload`'s: asyncio on raw keep-alive connections, one request at a
time per connection, latency from the request's first byte to the answer's last. Medians over
the rounds, and the V2/predict throughput ratio within each round. Writes
``bench/results/openinference.json``. Loopback only: the stack is a
:class:`cli.stack.LocalStack` on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.http import InferenceServerClient, InferInput

from bench.overload import RECORD, PhaseResult, _connection, _start_stack
from shared.data.schema import FEATURE_COLUMNS
from shared.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
CONNECTIONS = 16
PHASES = ("predict", "v2-json", "v2-binary")
INFER = "/v2/models/death_yn/infer"


def _request(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        head += f"{name}: {value}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def requests(port: int) -> dict[str, bytes]:
    """The one request each phase sends, again and again."""
    tensors = [
        {"name": column, "datatype": "BYTES", "shape": [1], "data": [RECORD[column]]}
        for column in FEATURE_COLUMNS
    ]
    binary_inputs = []
    for column in FEATURE_COLUMNS:
        tensor = InferInput(column, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([RECORD[column].encode()], dtype=np.object_))
        binary_inputs.append(tensor)
    binary, json_size = InferenceServerClient.generate_request_body(binary_inputs)
    return {
        "predict": _request(port, "/predict", json.dumps({"records": [RECORD]}).encode()),
        "v2-json": _request(port, INFER, json.dumps({"inputs": tensors}).encode()),
        "v2-binary": _request(
            port,
            INFER,
            binary,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(json_size),
            },
        ),
    }


async def run_phase(
    port: int, label: str, request: bytes, seconds: float, timeout: float
) -> PhaseResult:
    result = PhaseResult(label, CONNECTIONS, seconds)
    until = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(
        *(_connection(port, request, result, until, True, timeout) for _ in range(CONNECTIONS))
    )
    return result


def _check(port: int, sent: dict[str, bytes], timeout: float) -> None:
    """Every phase's request is answered 200 before anything is measured."""
    for label, request in sent.items():
        phase = asyncio.run(run_phase(port, label, request, 0.5, timeout))
        if not phase.ok_ms or phase.other or phase.errors or phase.timeouts:
            raise RuntimeError(f"{label}: the request is not answered 200: {phase.summary()}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.openinference", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--timeout", type=float, default=2.0, help="client timeout, seconds")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency of the API
        pass
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="rvt-openinference-") as work:
        stack = _start_stack(Path(work), Settings().predict_max_waiting)
        try:
            port = int(stack.base_url.rsplit(":", 1)[1])
            sent = requests(port)
            _check(port, sent, args.timeout)
            for label in PHASES:  # warm-up
                asyncio.run(run_phase(port, label, sent[label], 2.0, args.timeout))
            for number in range(1, args.rounds + 1):
                summaries = {}
                for label in PHASES:
                    phase = asyncio.run(
                        run_phase(port, label, sent[label], args.seconds, args.timeout)
                    )
                    summaries[label] = phase.summary()
                    print(f"round {number} {json.dumps(summaries[label])}", flush=True)
                rounds.append(summaries)
        finally:
            stack.stop()

    def median(label: str, key: str) -> float | None:
        values = [r[label][key] for r in rounds if r[label][key] is not None]
        return round(statistics.median(values), 2) if values else None

    def ratio(label: str) -> float | None:
        values = [
            r[label]["ok_per_s"] / r["predict"]["ok_per_s"]
            for r in rounds
            if r["predict"]["ok_per_s"]
        ]
        return round(statistics.median(values), 3) if values else None

    keys = ("ok_per_s", "ok_p50_ms", "ok_p99_ms", "client_timeouts")
    report = {
        "connections": CONNECTIONS,
        "seconds_per_phase": args.seconds,
        "rounds": rounds,
        "median": {label: {key: median(label, key) for key in keys} for label in PHASES},
        "throughput_ratio_to_predict": {label: ratio(label) for label in PHASES[1:]},
        "failures_total": sum(
            r[label]["client_timeouts"]
            + r[label]["connection_errors"]
            + sum(r[label]["other_statuses"].values())
            for r in rounds
            for label in r
        ),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "openinference.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
