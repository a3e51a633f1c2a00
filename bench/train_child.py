"""One training in a fresh process, so that its peak RSS is its own. Prints one JSON line:
wall times, rows, peak RSS, and the fitted coefficients.

The peak is the kernel's high-water mark of this process's resident memory (``VmHWM`` in
/proc/self/status), read at the end. (The ``ru_maxrss`` that ``wait4`` reports for a child
is not used: Linux counts in it the parent's resident size at the fork before ``exec``.)

    python -m bench.train_child streaming DATA.csv     # shared.training.train_model
    python -m bench.train_child inmemory DATA.csv      # pandas read + fit on the raw rows
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data.schema import FEATURE_COLUMNS, LABEL_COLUMN, MISSING
from shared.model.pipeline import ModelParams, build_pipeline
from shared.model.training import SplitParams, test_side_mask, train_model


def coefficients(pipeline: Any) -> list[float]:
    model = pipeline.named_steps["logisticregression"]
    return [float(model.intercept_[0]), *map(float, model.coef_[0])]


def streaming(path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    run = train_model(path)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "rows": run.metadata["rows"]["read"],
        "train_rows": run.metadata["rows"]["train"],
        "stages_s": run.metadata["stage_seconds"],
        "coefficients": coefficients(run.pipeline),
    }


def in_memory(path: Path) -> dict[str, Any]:
    """The plain way: read the file into a DataFrame (every column, as the streaming loader
    also parses every column), split by the same row hash, fit the same pipeline on the raw
    rows (no evaluation: this is the reference for the fit)."""
    started = time.perf_counter()
    frame = pd.read_csv(path)
    read = time.perf_counter() - started
    features = frame[list(FEATURE_COLUMNS)].fillna(MISSING)
    label = frame[LABEL_COLUMN]
    is_test = test_side_mask(0, len(frame), SplitParams())
    train = (~is_test) & label.isin(["Yes", "No"]).to_numpy()
    y = (label[train] == "Yes").to_numpy().astype(np.int64)
    pipeline = build_pipeline(ModelParams())
    pipeline.fit(features[train], y)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "rows": len(frame),
        "train_rows": int(train.sum()),
        "stages_s": {"read": read, "fit": wall - read},
        "coefficients": coefficients(pipeline),
    }


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    mode, path = sys.argv[1], Path(sys.argv[2])
    result = streaming(path) if mode == "streaming" else in_memory(path)
    print(json.dumps({"mode": mode, **result, "peak_rss_mib": peak_rss_mib()}), flush=True)


if __name__ == "__main__":
    main()
