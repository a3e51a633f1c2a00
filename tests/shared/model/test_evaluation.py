import math

import numpy as np
import pytest

from shared.model.evaluation import binary_metrics, check_gate, group_metrics

# Five rows checked by hand: threshold 0.5 gives tp=1 (0.9), fn=1 (0.4), fp=1 (0.6), tn=2.
Y = np.array([1, 1, 0, 0, 0])
P = np.array([0.9, 0.4, 0.6, 0.2, 0.1])


def test_metrics_on_a_hand_checked_case() -> None:
    m = binary_metrics(Y, P)
    assert m["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 1}
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(1 / 2)
    # recall 1/2, specificity 2/3
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # positive 0.9 beats all three negatives, 0.4 beats two of them: 5 of 6 pairs.
    assert m["roc_auc"] == pytest.approx(5 / 6)
    expected_log_loss = (
        -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.8) + math.log(0.9)) / 5
    )
    assert m["log_loss"] == pytest.approx(expected_log_loss)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.04 + 0.01) / 5)
    assert m["positive_rate"] == pytest.approx(2 / 5)
    assert m["observed_rate"] == pytest.approx(2 / 5)
    assert m["rows"] == 5 and m["positives"] == 2
    assert m["undefined"] == {}


def test_weights_equal_repeated_rows() -> None:
    """The trainer scores aggregated combinations: weight k must equal k copies of a row."""
    weights = np.array([3, 1, 2, 5, 4])
    repeated = binary_metrics(np.repeat(Y, weights), np.repeat(P, weights))
    weighted = binary_metrics(Y, P, weights)
    for key, value in repeated.items():
        if isinstance(value, float):
            assert weighted[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert weighted[key] == value, key


def test_one_class_gives_null_metrics_with_reasons() -> None:
    m = binary_metrics(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]))
    assert m["roc_auc"] is None
    assert "only one class" in m["undefined"]["roc_auc"]
    assert m["recall"] is None and "no positive" in m["undefined"]["recall"]
    assert m["precision"] is None and "predicted positive" in m["undefined"]["precision"]
    assert m["balanced_accuracy"] is None
    assert m["accuracy"] == pytest.approx(1.0)
    assert m["log_loss"] is not None


def test_empty_test_set_does_not_crash() -> None:
    m = binary_metrics(np.array([], dtype=int), np.array([]))
    assert m["rows"] == 0
    assert m["accuracy"] is None and m["roc_auc"] is None and m["log_loss"] is None


def test_gate_passes_and_fails_with_reasons() -> None:
    good = binary_metrics(Y, P)
    assert check_gate(good, {"roc_auc": 0.7}).passed
    failed = check_gate(good, {"roc_auc": 0.9})
    assert not failed.passed
    assert "roc_auc 0.8333 is below the minimum 0.9" in failed.reasons[0]


def test_gate_fails_on_an_undefined_metric() -> None:
    one_class = binary_metrics(np.array([0, 0]), np.array([0.1, 0.9]))
    result = check_gate(one_class, {"roc_auc": 0.0})
    assert not result.passed
    assert "undefined" in result.reasons[0] and "only one class" in result.reasons[0]


def test_group_metrics_split_by_value() -> None:
    groups = {
        "sex": np.array(["Male", "Male", "Female", "Female", "Female"]),
        "age_group": np.array(["80+ Years"] * 5),
        "race_ethnicity_combined": np.array(["Unknown"] * 5),
    }
    out = group_metrics(groups, Y, P, np.ones(5))
    male, female = out["sex"]["Male"], out["sex"]["Female"]
    assert male["rows"] == 2 and male["positives"] == 2
    assert male["recall"] == pytest.approx(1 / 2)
    assert male["roc_auc"] is None and "only one class" in male["undefined"]["roc_auc"]
    assert female["rows"] == 3 and female["positives"] == 0
    assert female["positive_rate"] == pytest.approx(1 / 3)
    assert out["age_group"]["80+ Years"]["roc_auc"] == pytest.approx(5 / 6)
