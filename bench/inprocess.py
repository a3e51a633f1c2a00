"""In-process floors: what scoring costs with no HTTP and no queue.

- the seed's per-request work: ``joblib.load`` of the registry artifact, a one-row DataFrame,
  ``pipeline.predict_proba``;
- the pipeline's own ``predict_proba`` on 1, 100 and 1,000 records (model already loaded);
- the lookup scorer the prediction workers use (``shared.scoring.Scorer``) on the same codes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from bench import bodies
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.model.scoring import Scorer
from shared.model.training import register_run, train_model
from shared.registry.versions import ModelRegistry

SIZES = (1, 100, 1000)


def per_call_us(
    func: Callable[[], object], budget_s: float = 0.6, repeats: int = 5
) -> dict[str, float]:
    """Median and best of ``repeats`` timings, each a loop sized to ~budget/repeats seconds."""
    func()
    started = time.perf_counter()
    calls = 0
    while time.perf_counter() - started < 0.05:
        func()
        calls += 1
    per_loop = max(1, int(calls * (budget_s / repeats) / 0.05))
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(per_loop):
            func()
        samples.append((time.perf_counter() - t) / per_loop * 1e6)
    return {"median_us": round(statistics.median(samples), 3), "best_us": round(min(samples), 3)}


def _frame(records: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(records).reindex(columns=list(FEATURE_COLUMNS)).fillna(MISSING)


def _codes(records: list[dict[str, str]]) -> np.ndarray:
    return np.array(
        [[VOCABULARY[c].index(r.get(c, MISSING)) for c in FEATURE_COLUMNS] for r in records],
        dtype=np.int8,
    )


def measure(dataset: Path, work: Path) -> dict[str, Any]:
    registry = ModelRegistry(work / "models")
    if registry.production_version() is None:
        register_run(registry, train_model(dataset))
    version = registry.production_version()
    assert version is not None
    artifact = registry.root / version / "model.joblib"
    pipeline = registry.load(version)
    scorer = Scorer(version, pipeline)
    out: dict[str, Any] = {"model_version": version, "artifact_bytes": artifact.stat().st_size}

    one = bodies.records(1)
    out["seed_request"] = per_call_us(
        lambda: joblib.load(artifact).predict_proba(_frame(one))[:, 1]
    )
    out["joblib_load"] = per_call_us(lambda: joblib.load(artifact))
    for n in SIZES:
        records = bodies.records(n)
        frame, codes = _frame(records), _codes(records)
        np.testing.assert_allclose(
            scorer.predict_proba(codes), pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-9
        )
        out[f"predict_proba_{n}"] = per_call_us(lambda f=frame: pipeline.predict_proba(f))
        out[f"predict_proba_dataframe_{n}"] = per_call_us(
            lambda r=records: pipeline.predict_proba(_frame(r))
        )
        out[f"lookup_{n}"] = per_call_us(lambda c=codes: scorer.predict_proba(c))
    for key, value in out.items():
        if isinstance(value, dict):
            print(f"  {key:<28} {value['median_us']:12.1f} us", flush=True)
    return out
