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
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

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


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def binary_metrics(
    y_true: np.ndarray, proba: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, Any]:
    """Key classification metrics with ``undefined`` naming why any of them is ``None``.

    The values are scikit-learn's, with ``sample_weight``; each is asked for only when it is
    defined on the data at hand, so there is no warning and no NaN to interpret."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=float)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    pred = (p >= THRESHOLD).astype(np.int64)
    tn, fp, fn, tp = (
        (float(v) for v in confusion_matrix(y, pred, labels=[0, 1], sample_weight=w).ravel())
        if len(y)
        else (0.0, 0.0, 0.0, 0.0)
    )
    n = tp + fn + fp + tn
    n_pos, n_neg = tp + fn, fp + tn
    undefined: dict[str, str] = {}

    def metric(defined: bool, name: str, reason: str, compute: Any) -> float | None:
        if defined:
            return float(compute())
        undefined[name] = reason
        return None

    no_rows = "the test set is empty"
    args = {"y_true": y, "sample_weight": w}
    accuracy = metric(n > 0, "accuracy", no_rows, lambda: accuracy_score(y_pred=pred, **args))
    precision = metric(
        tp + fp > 0,
        "precision",
        "no row was predicted positive",
        lambda: precision_score(y_pred=pred, **args),
    )
    recall = metric(
        n_pos > 0,
        "recall",
        "the test set has no positive (Yes) rows",
        lambda: recall_score(y_pred=pred, **args),
    )
    balanced_accuracy = metric(
        n_pos > 0 and n_neg > 0,
        "balanced_accuracy",
        "the test set lacks one of the classes",
        lambda: balanced_accuracy_score(y_pred=pred, **args),
    )
    f1 = metric(
        tp > 0,
        "f1",
        "precision or recall is undefined or both are zero",
        lambda: f1_score(y_pred=pred, **args),
    )
    only = "No" if n_pos == 0 else "Yes"
    roc_auc = metric(
        n_pos > 0 and n_neg > 0,
        "roc_auc",
        f"the test set has only one class ({only})",
        lambda: roc_auc_score(y_score=p, **args),
    )
    log_loss_value = metric(
        n > 0, "log_loss", no_rows, lambda: log_loss(y, p, sample_weight=w, labels=[0, 1])
    )
    brier = metric(n > 0, "brier", no_rows, lambda: np.average((p - y) ** 2, weights=w))
    mean_probability = metric(n > 0, "mean_probability", no_rows, lambda: np.average(p, weights=w))
    return {
        "rows": round(n),
        "positives": round(n_pos),
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc,
        "log_loss": log_loss_value,
        "brier": brier,
        "positive_rate": metric(n > 0, "positive_rate", no_rows, lambda: (tp + fp) / n),
        "observed_rate": metric(n > 0, "observed_rate", no_rows, lambda: n_pos / n),
        "mean_probability": mean_probability,
        "confusion_matrix": {"tn": round(tn), "fp": round(fp), "fn": round(fn), "tp": round(tp)},
        "undefined": undefined,
    }


#: The numbers kept for each group (besides which of them were undefined).
GROUP_METRICS = (
    "rows",
    "positives",
    "accuracy",
    "precision",
    "recall",
    "roc_auc",
    "positive_rate",
    "observed_rate",
    "mean_probability",
)
_GROUP_KEYS = (*GROUP_METRICS, "undefined")


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
