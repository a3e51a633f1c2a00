"""Two versions side by side, before one is promoted over the other.

Two kinds of difference. Their held-out metrics (overall and per group) are read from each
version's metadata; they are comparable only as far as both were measured on the same rows
(``same_test_rows``). Their predictions are compared everywhere: the seven features are
categorical, so both versions are evaluated on the same 95,040 combinations
(:func:`shared.model.table.tabulate`) and compared on all of them, with no sample: the share
of combinations whose label (``probability >= 0.5``, as ``/predict`` answers) differs, the
share of each version's training distribution (the cases it was fitted on, kept with it, see
:func:`shared.model.explain.distribution_of`) on which they differ, and the largest absolute
difference of probability, with the combination where it is.

Every difference is ``b - a``: a positive one means ``b`` has more of the metric.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS, GROUP_COLUMNS, VOCABULARY
from shared.model.evaluation import GROUP_METRICS, KEY_METRICS, THRESHOLD
from shared.model.explain import distribution_of
from shared.model.table import N_COMBINATIONS, SHAPE, all_combinations, tabulate
from shared.registry.versions import ModelVersion

__all__ = [
    "DIFFERENCE",
    "Comparison",
    "ComparisonCache",
    "Disagreement",
    "MetricDelta",
    "compare_metrics",
    "compare_versions",
    "disagreement",
    "label_disagreement",
    "probabilities",
    "same_test_rows",
]

#: What every difference is.
DIFFERENCE = "b - a"
#: +1: more is better; -1: less is better; 0: a description, neither better nor worse.
DIRECTION: dict[str, int] = {
    "roc_auc": 1,
    "accuracy": 1,
    "balanced_accuracy": 1,
    "precision": 1,
    "recall": 1,
    "f1": 1,
    "log_loss": -1,
    "brier": -1,
    "rows": 0,
    "positives": 0,
    "positive_rate": 0,
    "observed_rate": 0,
    "mean_probability": 0,
}
assert set(KEY_METRICS) | set(GROUP_METRICS) <= set(DIRECTION)

Better = Literal["a", "b", "same"]


@dataclass(frozen=True)
class MetricDelta:
    a: float | None
    b: float | None
    #: ``b - a``; None when either is undefined.
    difference: float | None
    #: Which version the difference favours; None when the metric has no better direction
    #: (a rate, a count) or either value is undefined.
    better: Better | None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _delta(name: str, a: Any, b: Any) -> MetricDelta:
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return MetricDelta(x, y, None, None)
    difference = y - x
    direction = DIRECTION.get(name, 0)
    better: Better | None = None
    if direction:
        better = "same" if difference == 0 else "b" if difference * direction > 0 else "a"
    return MetricDelta(x, y, difference, better)


def _mapping(value: Any) -> Mapping[str, Any]:
    """Metadata comes from disk: anything but an object reads as empty."""
    return value if isinstance(value, Mapping) else {}


def compare_metrics(
    meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]
) -> tuple[dict[str, MetricDelta], dict[str, dict[str, dict[str, MetricDelta]]]]:
    """The key metrics, and the per-group ones for every group either version has."""
    metrics_a, metrics_b = _mapping(meta_a.get("metrics")), _mapping(meta_b.get("metrics"))
    overall = {name: _delta(name, metrics_a.get(name), metrics_b.get(name)) for name in KEY_METRICS}
    groups_a, groups_b = (
        _mapping(meta_a.get("group_metrics")),
        _mapping(meta_b.get("group_metrics")),
    )
    per_group: dict[str, dict[str, dict[str, MetricDelta]]] = {}
    for column in GROUP_COLUMNS:
        column_a, column_b = _mapping(groups_a.get(column)), _mapping(groups_b.get(column))
        order = {value: i for i, value in enumerate(VOCABULARY[column])}
        values = sorted(set(column_a) | set(column_b), key=lambda v: (order.get(v, len(order)), v))
        per_group[column] = {
            value: {
                name: _delta(
                    name,
                    _mapping(column_a.get(value)).get(name),
                    _mapping(column_b.get(value)).get(name),
                )
                for name in GROUP_METRICS
            }
            for value in values
        }
    return overall, per_group


def same_test_rows(meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]) -> bool:
    """Whether both versions were measured on the same held-out rows: the same file (by its
    sha256) split the same way. Otherwise a metric's difference mixes models and data."""
    data_a, data_b = _mapping(meta_a.get("dataset")), _mapping(meta_b.get("dataset"))
    split_a, split_b = _mapping(meta_a.get("split")), _mapping(meta_b.get("split"))
    keys = ("test_size", "random_state")
    return (
        isinstance(data_a.get("sha256"), str)
        and data_a.get("sha256") == data_b.get("sha256")
        and all(k in split_a and split_a.get(k) == split_b.get(k) for k in keys)
    )


# --- predictions on every combination ----------------------------------------------------------


def probabilities(pipeline: Any) -> tuple[np.ndarray, str]:
    """P(death_yn = Yes) of every combination, in table order, and how it was computed: the
    version's table, or (a pipeline of no known shape) its ``predict_proba`` on all of them."""
    table = tabulate(pipeline)
    if table is not None:
        return table.probability, table.method
    with threadpool_limits(1):
        frame = decode_features(all_combinations())
        return np.asarray(pipeline.predict_proba(frame)[:, 1], dtype=np.float64), "predict_proba"


@dataclass(frozen=True)
class Disagreement:
    """Where two versions' predictions differ, over the whole feature space."""

    #: Combinations (of the 95,040) whose labels differ.
    combinations: int
    #: ``combinations / 95,040``.
    share: float
    #: The share of a's (b's) training cases on which the labels differ; None for a version
    #: saved without its training distribution.
    mass_under_a: float | None
    mass_under_b: float | None
    #: max |p_b - p_a| over every combination.
    largest_difference: float
    #: The first combination (in table order) where it is reached, as feature values, and both
    #: probabilities there; None when the two agree exactly everywhere.
    largest_at: dict[str, str] | None
    probability_a: float | None
    probability_b: float | None
    #: How each version was evaluated ("coefficients", "trees", "pipeline", "predict_proba").
    method_a: str
    method_b: str
    #: Time to load both versions and compare them (what a cached answer saved).
    seconds: float


def label_disagreement(
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    distribution_a: np.ndarray | None,
    distribution_b: np.ndarray | None,
) -> tuple[np.ndarray, float | None, float | None]:
    """Where the labels differ (a boolean per combination), and the mass of each distribution
    (probabilities over the same combinations) there."""
    differ = (proba_a >= THRESHOLD) != (proba_b >= THRESHOLD)

    def mass(distribution: np.ndarray | None) -> float | None:
        if distribution is None:
            return None
        found = float(np.asarray(distribution, dtype=np.float64).reshape(-1)[differ].sum())
        return min(found, 1.0)  # a sum of shares may round past 1 by an ulp

    return differ, mass(distribution_a), mass(distribution_b)


def disagreement(pipeline_a: Any, pipeline_b: Any, seconds: float = 0.0) -> Disagreement:
    """Compare two fitted pipelines on every combination (``seconds``: the loading time so far,
    added to the comparison's own)."""
    started = time.perf_counter()
    proba_a, method_a = probabilities(pipeline_a)
    proba_b, method_b = (
        (proba_a, method_a) if pipeline_b is pipeline_a else probabilities(pipeline_b)
    )
    differ, mass_a, mass_b = label_disagreement(
        proba_a, proba_b, distribution_of(pipeline_a), distribution_of(pipeline_b)
    )
    gap = np.abs(proba_b - proba_a)
    where = int(np.argmax(gap))
    largest = float(gap[where])
    at = None
    if largest > 0:
        codes = np.unravel_index(where, SHAPE)
        at = {
            col: VOCABULARY[col][int(code)]
            for col, code in zip(FEATURE_COLUMNS, codes, strict=True)
        }
    count = int(differ.sum())
    return Disagreement(
        combinations=count,
        share=count / N_COMBINATIONS,
        mass_under_a=mass_a,
        mass_under_b=mass_b,
        largest_difference=largest,
        largest_at=at,
        probability_a=float(proba_a[where]) if at else None,
        probability_b=float(proba_b[where]) if at else None,
        method_a=method_a,
        method_b=method_b,
        seconds=seconds + time.perf_counter() - started,
    )


# --- two registry versions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    a: ModelVersion
    b: ModelVersion
    metrics: dict[str, MetricDelta]
    group_metrics: dict[str, dict[str, dict[str, MetricDelta]]]
    same_test_rows: bool
    disagreement: Disagreement
    #: Whether the disagreement came from the cache (computed for an earlier request).
    cached: bool

    def as_dict(self) -> dict[str, Any]:
        def side(info: ModelVersion, method: str) -> dict[str, Any]:
            meta = info.metadata
            estimator = meta.get("estimator")
            return {
                "version": info.version,
                "estimator": estimator if isinstance(estimator, str) else None,
                "dataset": meta.get("dataset") if isinstance(meta.get("dataset"), dict) else None,
                "created_at": meta.get("created_at"),
                "evaluated_by": method,
            }

        found = asdict(self.disagreement)
        return {
            "a": side(self.a, found.pop("method_a")),
            "b": side(self.b, found.pop("method_b")),
            "difference": DIFFERENCE,
            "same_test_rows": self.same_test_rows,
            "metrics": {k: asdict(v) for k, v in self.metrics.items()},
            "group_metrics": {
                column: {
                    value: {k: asdict(v) for k, v in deltas.items()}
                    for value, deltas in groups.items()
                }
                for column, groups in self.group_metrics.items()
            },
            "disagreement": {**found, "total": N_COMBINATIONS},
            "cached": self.cached,
        }


class ComparisonCache:
    """The last ``size`` disagreements computed, keyed by the two artifacts' sha256.

    A comparison loads and evaluates both versions (tens to hundreds of milliseconds each; see
    the README), and a user deciding on a promotion opens the same one again and again. A
    version never changes once saved, and its checksum names its bytes, so an answer keyed by
    the two checksums stays true for as long as it is kept, whichever registry or process asks
    (a version name alone would not do: a test's ``v1`` in one folder is not another's). Bounded,
    because pairs of versions are without end; an entry is a few hundred bytes. Two requests for
    the same new pair may both compute it: the answers are equal, and no lock is held meanwhile.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], Disagreement] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Disagreement | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], value: Disagreement) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _cache_key(a: ModelVersion, b: ModelVersion) -> tuple[str, str] | None:
    """The two artifacts' checksums (None if either is missing: its load fails anyway)."""
    sha_a, sha_b = a.metadata.get("artifact_sha256"), b.metadata.get("artifact_sha256")
    return (sha_a, sha_b) if isinstance(sha_a, str) and isinstance(sha_b, str) else None


def compare_versions(
    a: ModelVersion,
    b: ModelVersion,
    load: Callable[[str], Any],
    cache: ComparisonCache | None = None,
) -> Comparison:
    """Compare two registry versions; ``load`` is the registry's checksummed load. ``b`` may be
    ``a`` itself (everything then agrees: a check of the comparison, not an error)."""
    key = _cache_key(a, b) if cache is not None else None
    found = cache.get(key) if cache is not None and key is not None else None
    cached = found is not None
    if found is None:
        started = time.perf_counter()
        pipeline_a = load(a.version)
        pipeline_b = pipeline_a if b.version == a.version else load(b.version)
        found = disagreement(pipeline_a, pipeline_b, time.perf_counter() - started)
        if cache is not None and key is not None:
            cache.put(key, found)
    metrics, groups = compare_metrics(a.metadata, b.metadata)
    same = same_test_rows(a.metadata, b.metadata)
    return Comparison(a, b, metrics, groups, same, found, cached)
