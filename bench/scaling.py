"""Training wall time and peak memory against rows: the streaming trainer, and a plain
in-memory fit as the reference where it fits in memory, each in a fresh child process that
reports its own peak RSS (see :mod:`bench.train_child`); its CPU time comes from ``wait4``."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loadgen import wait_with_usage
from cli.stack import PYTHON

ROOT = Path(__file__).resolve().parent.parent


def measured_child(mode: str, dataset: Path, timeout_s: float = 900) -> dict[str, Any]:
    """Run one training child; its JSON result plus peak RSS and process wall time."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        popen = subprocess.Popen(
            [PYTHON, "-m", "bench.train_child", mode, str(dataset)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = wait_with_usage(popen, timeout_s)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if status != 0:
        raise RuntimeError(f"{mode} training on {dataset.name} exited {status}")
    result: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    result["peak_rss_mib"] = round(result["peak_rss_mib"], 1)
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    result["rows_per_s"] = round(result["rows"] / result["wall_s"])
    return result


def measure(
    dataset: Callable[[int], Path], streaming_rows: tuple[int, ...], inmemory_rows: tuple[int, ...]
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for rows in sorted(set(streaming_rows) | set(inmemory_rows)):
        path = dataset(rows)
        for mode in ("streaming", "inmemory"):
            if rows not in (streaming_rows if mode == "streaming" else inmemory_rows):
                continue
            result = measured_child(mode, path)
            result["dataset_rows"] = rows
            result["file_mib"] = round(path.stat().st_size / 2**20, 1)
            runs.append(result)
            print(
                f"  {mode:<9} {rows:>11,} rows: {result['wall_s']:7.2f} s "
                f"({result['rows_per_s']:>10,} rows/s), peak RSS {result['peak_rss_mib']:7.1f} MiB",
                flush=True,
            )
    agreement = []
    for rows in inmemory_rows:
        pair = {r["mode"]: r for r in runs if r["dataset_rows"] == rows}
        if len(pair) == 2:
            a, b = pair["streaming"]["coefficients"], pair["inmemory"]["coefficients"]
            agreement.append(
                {
                    "rows": rows,
                    "max_abs_coefficient_difference": max(
                        abs(x - y) for x, y in zip(a, b, strict=True)
                    ),
                    "speedup": round(pair["inmemory"]["wall_s"] / pair["streaming"]["wall_s"], 2),
                }
            )
    for run in runs:
        run["coefficients"] = len(run["coefficients"])  # keep the JSON small: count only
    return {"runs": runs, "agreement": agreement}
