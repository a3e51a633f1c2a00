"""Training without holding the file: stream, split, aggregate, fit on counts.

Every feature is categorical, so a file of any length reduces to at most a few hundred
thousand distinct feature combinations, each with a count of Yes and No rows on each side of
the split. Fitting the logistic regression on those combinations with the counts as sample
weights has exactly the same objective as fitting it on the raw rows, so it reaches the same
optimum in a fraction of the time and memory (gradient boosting too, but for the few rules of
scikit-learn that count rows: see :mod:`shared.model.pipeline` and the README). The split is a hash of the seed and the row
number, so it is the same whether rows are streamed or loaded, and needs no state.
"""

from __future__ import annotations

import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from shared.data.loader import EncodedCsv, LoadReport, decode_features
from shared.data.schema import FEATURE_COLUMNS, GROUP_COLUMNS, VOCABULARY
from shared.data.source import CsvSource
from shared.errors import DataError, InvalidParameterError
from shared.model.evaluation import GateResult, binary_metrics, check_gate, group_metrics
from shared.model.explain import attach_distribution
from shared.model.pipeline import EstimatorParams, ModelParams, build_pipeline, fit_params
from shared.registry.versions import ModelRegistry, ModelVersion

#: Share of the overall progress bar each stage takes (reading dominates on large files).
_STAGE_SPAN = {"reading": (0.0, 0.8), "fitting": (0.8, 0.92), "evaluating": (0.92, 0.97)}
_SHAPE = tuple(len(VOCABULARY[col]) for col in FEATURE_COLUMNS)
_N_KEYS = int(np.prod(_SHAPE))


@dataclass(frozen=True)
class Progress:
    """What a training reports as it goes: a CLI draws it, a worker publishes it."""

    stage: str
    fraction: float
    rows_read: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class SplitParams:
    test_size: float = 0.2
    random_state: int = 42

    def __post_init__(self) -> None:
        if not 0.0 < self.test_size < 1.0:
            raise InvalidParameterError(
                "test_size must be between 0 and 1 (exclusive)", details={"field": "test_size"}
            )
        if self.random_state < 0:
            raise InvalidParameterError(
                "random_state must be 0 or more", details={"field": "random_state"}
            )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash (wrapping arithmetic on uint64 arrays)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def test_side_mask(first_row: int, n: int, split: SplitParams) -> np.ndarray:
    """True where a row goes to the test side: a pure function of (seed, row number), so
    stratified in expectation and identical however the rows are read."""
    rows = np.arange(first_row, first_row + n, dtype=np.uint64)
    salt = _splitmix64(np.array([split.random_state], dtype=np.uint64))
    uniform = (_splitmix64(rows ^ salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return uniform < split.test_size


test_side_mask.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@dataclass
class Counts:
    """Distinct feature combinations (as codes) with their number of No and Yes rows."""

    codes: np.ndarray
    negatives: np.ndarray
    positives: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.negatives.sum() + self.positives.sum())

    def weighted_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One row per (combination, label) that occurs: codes, labels, weights."""
        neg, pos = self.negatives > 0, self.positives > 0
        codes = np.concatenate([self.codes[neg], self.codes[pos]])
        labels = np.concatenate([np.zeros(neg.sum(), np.int64), np.ones(pos.sum(), np.int64)])
        weights = np.concatenate([self.negatives[neg], self.positives[pos]]).astype(float)
        return codes, labels, weights


def _counts_from_bins(bins: np.ndarray, side: int) -> Counts:
    per_key = bins.reshape(_N_KEYS, 2, 2)[:, side, :]  # [key, label]
    keys = np.flatnonzero(per_key.sum(axis=1))
    codes = np.column_stack(np.unravel_index(keys, _SHAPE)).astype(np.int8)
    return Counts(codes.reshape(-1, len(FEATURE_COLUMNS)), per_key[keys, 0], per_key[keys, 1])


def aggregate(
    stream: EncodedCsv,
    split: SplitParams,
    on_progress: ProgressCallback | None = None,
) -> tuple[Counts, Counts]:
    """One pass over the file: (train, test) counts. Unlabelled rows are counted, not kept.

    Each row's bin is its combination's mixed-radix number, its side and its label, built in
    place with whole-column operations (no copy of the labelled rows: an unlabelled row goes
    to one extra bin that is dropped), so this keeps up with the reader."""
    bins = np.zeros(_N_KEYS * 4 + 1, dtype=np.int64)
    for chunk in stream:
        n = len(chunk.labels)
        index = np.zeros(n, dtype=np.int32)
        for j, size in enumerate(_SHAPE):
            index *= size
            index += chunk.features[:, j]
        index *= 2
        index += test_side_mask(chunk.first_row, n, split)
        index *= 2
        index += chunk.labels
        index[chunk.labels < 0] = _N_KEYS * 4
        bins += np.bincount(index, minlength=len(bins))
        if on_progress is not None:
            done = chunk.bytes_read / stream.total_bytes if stream.total_bytes else 1.0
            on_progress(Progress("reading", _span("reading", done), stream.report.rows_read))
    return _counts_from_bins(bins[:-1], 0), _counts_from_bins(bins[:-1], 1)


def _span(stage: str, done: float) -> float:
    lo, hi = _STAGE_SPAN[stage]
    return lo + (hi - lo) * min(max(done, 0.0), 1.0)


def fit_counts(train: Counts, params: EstimatorParams) -> tuple[Pipeline, bool]:
    """Fit the pipeline on weighted combinations; also say whether the solver converged (a
    boosting run has no convergence to miss: it always is). The fitted pipeline carries the
    training side's distribution, against which its predictions are explained."""
    codes, labels, weights = train.weighted_rows()
    if len(set(labels.tolist())) < 2:
        raise DataError(
            "the training side of the split has only one class; use a larger dataset "
            "or a smaller test_size"
        )
    pipeline = build_pipeline(params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pipeline.fit(decode_features(codes), labels, **fit_params(params, labels, weights))
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    attach_distribution(pipeline, train.codes, train.negatives + train.positives)
    return pipeline, converged


def evaluate(pipeline: Pipeline, test: Counts) -> tuple[dict[str, Any], dict[str, Any]]:
    """Overall and per-group metrics on the held-out side."""
    codes, labels, weights = test.weighted_rows()
    frame = decode_features(codes)
    proba = pipeline.predict_proba(frame)[:, 1] if len(frame) else np.empty(0)
    overall = binary_metrics(labels, proba, weights)
    groups = {col: frame[col].to_numpy() for col in GROUP_COLUMNS}
    return overall, group_metrics(groups, labels, proba, weights)


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
    }


@dataclass
class TrainingRun:
    """A fitted, evaluated model not yet in the registry, with everything its metadata says."""

    pipeline: Pipeline
    gate: GateResult
    metadata: dict[str, Any] = field(default_factory=dict)


def train_model(
    dataset: CsvSource,
    params: EstimatorParams | None = None,
    split: SplitParams | None = None,
    minimums: dict[str, float] | None = None,
    on_progress: ProgressCallback | None = None,
    chunk_rows: int = 250_000,
    dataset_name: str | None = None,
) -> TrainingRun:
    """Stream ``dataset``, fit, evaluate and gate. ``on_progress`` may raise to cancel."""
    params = params or ModelParams()
    split = split or SplitParams()
    minimums = {"roc_auc": 0.7} if minimums is None else minimums
    report_progress = on_progress or (lambda _progress: None)
    started = time.perf_counter()
    stages: dict[str, float] = {}

    stream = EncodedCsv(dataset, chunk_rows)
    report_progress(Progress("reading", 0.0, 0))
    train, test = aggregate(stream, split, report_progress)
    stream.report.check_labels()
    stages["read_and_aggregate"] = time.perf_counter() - started
    rows_read = stream.report.rows_read

    mark = time.perf_counter()
    report_progress(Progress("fitting", _STAGE_SPAN["fitting"][0], rows_read))
    pipeline, converged = fit_counts(train, params)
    stages["fit"] = time.perf_counter() - mark

    mark = time.perf_counter()
    report_progress(Progress("evaluating", _STAGE_SPAN["evaluating"][0], rows_read))
    metrics, per_group = evaluate(pipeline, test)
    gate = check_gate(metrics, minimums)
    stages["evaluate"] = time.perf_counter() - mark
    report_progress(Progress("evaluated", _STAGE_SPAN["evaluating"][1], rows_read))

    metadata = {
        "dataset": {
            "name": dataset_name or dataset.name,
            "size_bytes": stream.total_bytes,
            "sha256": stream.sha256,
        },
        "rows": _row_counts(stream.report, train, test),
        "invalid_values": dict(stream.report.invalid_values),
        "estimator": params.estimator,
        "params": params.as_dict(),
        "split": {**asdict(split), "method": "hash of (random_state, row number)"},
        "metrics": metrics,
        "group_metrics": per_group,
        "gate": gate.as_dict(),
        "converged": converged,
        "feature_combinations": {"train": len(train.codes), "test": len(test.codes)},
        "library_versions": library_versions(),
        "stage_seconds": stages,
        "training_seconds": time.perf_counter() - started,
    }
    return TrainingRun(pipeline=pipeline, gate=gate, metadata=metadata)


def _row_counts(report: LoadReport, train: Counts, test: Counts) -> dict[str, int]:
    return {
        "read": report.rows_read,
        "labelled": report.labelled,
        "left_out_unlabelled": report.unlabelled,
        "train": train.rows,
        "test": test.rows,
        "train_positives": int(train.positives.sum()),
        "test_positives": int(test.positives.sum()),
    }


@dataclass
class RegisteredRun:
    version: ModelVersion
    promoted: bool
    gate: GateResult
    save_seconds: float


def register_run(
    registry: ModelRegistry,
    run: TrainingRun,
    promote: bool = True,
    on_progress: ProgressCallback | None = None,
) -> RegisteredRun:
    """Save the run as a new version (the commit point) and promote it if it passed the gate."""
    rows = int(run.metadata["rows"]["read"])
    if on_progress is not None:
        on_progress(Progress("saving", 0.97, rows))
    mark = time.perf_counter()
    info = registry.save_version(run.pipeline, {**run.metadata, "promote_requested": promote})
    promoted = promote and run.gate.passed
    if promoted:
        registry.promote(info.version)
    if on_progress is not None:
        on_progress(Progress("done", 1.0, rows))
    return RegisteredRun(info, promoted, run.gate, time.perf_counter() - mark)
