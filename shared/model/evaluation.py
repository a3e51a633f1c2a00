"""Held-out metrics, overall and per group, and the quality gate.

Every metric takes per-row weights, so the same code scores raw rows (weight 1) and the
aggregated feature combinations the trainer produces (weight = row count) with identical
results. A metric that is undefined on the data at hand is ``None`` with a reason beside it,
never an exception: the real CDC extract has six deaths, and a run on it must still finish.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from shared.data.schema import GROUP_COLUMNS

THRESHOLD = 0.5
#: The metrics shown wherever a version is summarised (CLI, API listing, dashboard).
KEY_METRICS = (
    "roc_auc",
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "brier",
)
_EPS = 1e-15


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def binary_metrics(
    y_true: np.ndarray, proba: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, Any]:
    """Key classification metrics with ``undefined`` naming why any of them is ``None``."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=float)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    pred = p >= THRESHOLD
    pos, neg = y == 1, y == 0
    tp = float(w[pos & pred].sum())
    fn = float(w[pos & ~pred].sum())
    fp = float(w[neg & pred].sum())
    tn = float(w[neg & ~pred].sum())
    n = tp + fn + fp + tn
    n_pos, n_neg = tp + fn, fp + tn
    undefined: dict[str, str] = {}

    def need(value: float | None, name: str, reason: str) -> float | None:
        if value is None:
            undefined[name] = reason
        return value

    no_rows = "the test set is empty"
    accuracy = need(_ratio(tp + tn, n), "accuracy", no_rows)
    precision = need(_ratio(tp, tp + fp), "precision", "no row was predicted positive")
    recall = need(_ratio(tp, n_pos), "recall", "the test set has no positive (Yes) rows")
    specificity = _ratio(tn, n_neg)
    if recall is not None and specificity is not None:
        balanced_accuracy: float | None = (recall + specificity) / 2
    else:
        balanced_accuracy = need(None, "balanced_accuracy", "the test set lacks one of the classes")
    if precision is not None and recall is not None and precision + recall > 0:
        f1: float | None = 2 * precision * recall / (precision + recall)
    else:
        f1 = need(None, "f1", "precision or recall is undefined or both are zero")
    if n_pos > 0 and n_neg > 0:
        roc_auc: float | None = float(roc_auc_score(y, p, sample_weight=w))
    else:
        only = "No" if n_pos == 0 else "Yes"
        roc_auc = need(None, "roc_auc", f"the test set has only one class ({only})")
    if n > 0:
        clipped = np.clip(p, _EPS, 1 - _EPS)
        losses = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
        log_loss: float | None = float((w * losses).sum() / n)
        brier: float | None = float((w * (p - y) ** 2).sum() / n)
        mean_probability: float | None = float((w * p).sum() / n)
    else:
        log_loss = need(None, "log_loss", no_rows)
        brier = need(None, "brier", no_rows)
        mean_probability = need(None, "mean_probability", no_rows)
    return {
        "rows": round(n),
        "positives": round(n_pos),
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc,
        "log_loss": log_loss,
        "brier": brier,
        "positive_rate": need(_ratio(tp + fp, n), "positive_rate", no_rows),
        "observed_rate": need(_ratio(n_pos, n), "observed_rate", no_rows),
        "mean_probability": mean_probability,
        "confusion_matrix": {"tn": round(tn), "fp": round(fp), "fn": round(fn), "tp": round(tp)},
        "undefined": undefined,
    }


_GROUP_KEYS = (
    "rows",
    "positives",
    "accuracy",
    "precision",
    "recall",
    "roc_auc",
    "positive_rate",
    "observed_rate",
    "mean_probability",
    "undefined",
)


def group_metrics(
    groups: dict[str, np.ndarray],
    y_true: np.ndarray,
    proba: np.ndarray,
    weight: np.ndarray,
) -> dict[str, dict[str, dict[str, Any]]]:
    """The key metrics per value of each group column (``groups[col]`` holds the values)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for col in GROUP_COLUMNS:
        values = groups[col]
        per_value: dict[str, dict[str, Any]] = {}
        for value in sorted(set(values.tolist())):
            mask = values == value
            full = binary_metrics(y_true[mask], proba[mask], weight[mask])
            kept = {k: full[k] for k in _GROUP_KEYS}
            kept["undefined"] = {k: v for k, v in full["undefined"].items() if k in _GROUP_KEYS}
            per_value[str(value)] = kept
        out[col] = per_value
    return out


@dataclass
class GateResult:
    """Whether a run may be promoted, and why not."""

    passed: bool
    minimums: dict[str, float]
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_gate(metrics: dict[str, Any], minimums: dict[str, float]) -> GateResult:
    """Every minimum must be met; a metric that came out ``None`` fails it."""
    reasons: list[str] = []
    for name, minimum in sorted(minimums.items()):
        value = metrics.get(name)
        if value is None:
            why = metrics.get("undefined", {}).get(name, "not computed")
            reasons.append(f"{name} is undefined ({why}), so it cannot reach {minimum}")
        elif value < minimum:
            reasons.append(f"{name} {value:.4f} is below the minimum {minimum}")
    return GateResult(passed=not reasons, minimums=dict(minimums), reasons=reasons)
