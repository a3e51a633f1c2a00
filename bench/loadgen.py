"""Load generation with wrk, on loopback only, bounded in requests and in time.

wrk is written in C (epoll, one thread here), so on a 2-core machine it takes far less of the
CPU the server needs than a Python client would. A small Lua script (``wrk_report.lua``) sets
the POST body, stops each wrk thread after a number of responses, and prints the latency
percentiles as JSON from wrk's ``done`` hook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    return found


def wrk_version() -> str:
    out = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0].strip()


@dataclass
class LoadResult:
    """One wrk run: throughput, errors and the latency distribution (milliseconds)."""

    label: str
    url: str
    connections: int
    duration_s: float
    requests: int
    errors: dict[str, int]
    latency_ms: dict[str, float]
    percentiles_ms: dict[str, float]
    records_per_request: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def records_per_s(self) -> float:
        return self.rps * self.records_per_request

    @property
    def p50(self) -> float:
        return self.percentiles_ms["50"]

    @property
    def p99(self) -> float:
        return self.percentiles_ms["99"]

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "url": self.url,
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "records_per_request": self.records_per_request,
            "records_per_s": round(self.records_per_s, 1),
            "p50_ms": round(self.p50, 3),
            "p90_ms": round(self.percentiles_ms["90"], 3),
            "p99_ms": round(self.p99, 3),
            "p999_ms": round(self.percentiles_ms["99.9"], 3),
            "errors": self.errors,
            "latency_ms": self.latency_ms,
            "percentiles_ms": self.percentiles_ms,
            **self.extra,
        }


def run_wrk(
    url: str,
    *,
    label: str,
    connections: int,
    duration_s: float,
    max_requests: int,
    body: bytes | None = None,
    records_per_request: int = 0,
    threads: int = 1,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Run wrk against ``url`` (loopback only) until ``duration_s`` or ``max_requests``."""
    host = urlsplit(url).hostname or ""
    if not host.startswith(_LOOPBACK):
        raise ValueError(f"load is generated on loopback only, not {host!r}")
    with tempfile.TemporaryDirectory(prefix="rvt-wrk-") as tmp:
        env = {
            **os.environ,
            "RVT_METHOD": "POST" if body is not None else "GET",
            "RVT_MAX_REQUESTS": str(max(1, max_requests // threads)),
            "RVT_BODY_FILE": "",
        }
        if body is not None:
            body_file = Path(tmp) / "body.json"
            body_file.write_bytes(body)
            env["RVT_BODY_FILE"] = str(body_file)
        command = [
            wrk_path(), "-t", str(threads), "-c", str(connections),
            "-d", f"{max(1, round(duration_s))}s", "--timeout", f"{timeout_s:g}s",
            "-s", str(SCRIPT), url,
        ]  # fmt: skip
        out_path = Path(tmp) / "out.txt"
        with out_path.open("wb") as out:
            popen = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        # wait4, not wait: it also returns wrk's own CPU time (the load generator's share)
        _, status, usage = wait_with_usage(popen, timeout_s=duration_s + 60)
        stdout = out_path.read_text(errors="replace")
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RVT_JSON ")), None)
    if status != 0 or line is None:
        raise RuntimeError(f"wrk failed ({status}): {stdout}")
    raw = json.loads(line.removeprefix("RVT_JSON "))
    lat = raw["latency_us"]
    return LoadResult(
        label=label,
        url=url,
        connections=connections,
        duration_s=raw["duration_us"] / 1e6,
        requests=raw["requests"],
        errors=raw["errors"],
        latency_ms={k: round(lat[k] / 1000, 3) for k in ("min", "max", "mean", "stdev")},
        percentiles_ms={k: v / 1000 for k, v in lat["percentiles"].items()},
        records_per_request=records_per_request,
        extra={"client_cpu_s": round(usage.ru_utime + usage.ru_stime, 3)},
    )


def wait_with_usage(popen: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, int, Any]:
    """Wait for ``popen`` (killing it after ``timeout_s``) and return its rusage too."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
        if pid:
            popen.returncode = os.waitstatus_to_exitcode(status)
            return pid, popen.returncode, usage
        if time.monotonic() > deadline:
            popen.kill()
        time.sleep(0.02)
