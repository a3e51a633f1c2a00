import itertools

import numpy as np
import pytest

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.model.pipeline import ModelParams
from shared.model.scoring import EXPLAIN, Scorer, decode_codes, encode_codes, score_batch
from shared.model.training import train_model
from tests.conftest import MakeDataset

SIZES = [len(VOCABULARY[col]) for col in FEATURE_COLUMNS]


def every_code_row(limit: int = 20_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(0, n, limit) for n in SIZES]).astype(np.int8)


@pytest.fixture(scope="module")
def pipelines(make_dataset: MakeDataset):
    data = make_dataset(20_000, 7)
    return [
        train_model(data, ModelParams(C=1.0)).pipeline,
        train_model(data, ModelParams(C=0.05, class_weight="balanced")).pipeline,
    ]


def test_lookup_scoring_equals_predict_proba(pipelines) -> None:
    codes = every_code_row()
    for pipeline in pipelines:
        expected = pipeline.predict_proba(decode_features(codes))[:, 1]
        np.testing.assert_allclose(
            Scorer("v1", pipeline).predict_proba(codes), expected, rtol=0, atol=1e-9
        )


def test_every_single_category_scores_like_the_pipeline(pipelines) -> None:
    """One row per value of each column (the rest Missing), including values never seen."""
    rows = []
    for j, n in enumerate(SIZES):
        for code in range(n):
            row = [VOCABULARY[col].index("Missing") for col in FEATURE_COLUMNS]
            row[j] = code
            rows.append(row)
    codes = np.array(rows, dtype=np.int8)
    scorer = Scorer("v1", pipelines[0])
    expected = pipelines[0].predict_proba(decode_features(codes))[:, 1]
    np.testing.assert_allclose(scorer.predict_proba(codes), expected, rtol=0, atol=1e-9)


def test_unknown_pipeline_shape_falls_back_to_predict_proba(pipelines) -> None:
    class Wrapped:
        def __init__(self, inner) -> None:
            self.inner = inner

        def predict_proba(self, frame):
            return self.inner.predict_proba(frame)

    codes = every_code_row(100)
    expected = pipelines[0].predict_proba(decode_features(codes))[:, 1]
    np.testing.assert_allclose(Scorer("v1", Wrapped(pipelines[0])).predict_proba(codes), expected)


def test_codes_round_trip_and_refuse_garbage() -> None:
    codes = every_code_row(500)
    encoded = encode_codes(codes)
    assert len(encoded) == codes.size
    np.testing.assert_array_equal(decode_codes(encoded), codes)
    for bad in ["", "000000", "0" * 6 + "z", "f" * 7, "0" * 8]:
        with pytest.raises(ValueError):
            decode_codes(bad)


def test_a_batch_is_scored_in_one_call_and_each_request_gets_its_rows(pipelines) -> None:
    model = Scorer("v3", pipelines[0])
    codes = every_code_row(60, seed=4)
    sizes = [1, 7, 1, 30, 21]
    starts = np.cumsum([0, *sizes])
    batch = [
        [f"r{i}", encode_codes(codes[a:b])] for i, (a, b) in enumerate(itertools.pairwise(starts))
    ]
    replies = score_batch(model, batch)
    expected = pipelines[0].predict_proba(decode_features(codes))[:, 1]
    assert [r["id"] for r in replies] == [f"r{i}" for i in range(len(sizes))]
    for reply, a, b in zip(replies, starts[:-1], starts[1:], strict=True):
        assert reply["version"] == "v3"
        np.testing.assert_allclose(reply["probabilities"], expected[a:b], rtol=0, atol=1e-9)


def test_a_bad_request_in_a_batch_fails_alone(pipelines) -> None:
    model = Scorer("v3", pipelines[0])
    good = encode_codes(every_code_row(2))
    replies = score_batch(model, [["a", good], ["b", "zz"], ["c", "f" * 7], ["d", good]])
    assert [r.get("error", {}).get("code") for r in replies] == [
        None,
        "bad_request",
        "bad_request",
        None,
    ]
    assert replies[0]["probabilities"] == replies[3]["probabilities"]
    assert score_batch(model, []) == []


def test_only_the_requests_that_ask_are_explained(fitted) -> None:
    """A batch mixes explained and plain requests: each gets what it asked for, from one
    scoring call, and the explanation is the scorer's own for its rows."""
    model = Scorer("v4", fitted["boosting"])
    codes = every_code_row(9, seed=8)
    batch = [
        ["a", encode_codes(codes[:2])],
        ["b", encode_codes(codes[2:5]), EXPLAIN],
        ["c", encode_codes(codes[5:])],
    ]
    replies = score_batch(model, batch)
    assert [set(r) for r in replies] == [
        {"id", "version", "probabilities"},
        {"id", "version", "probabilities", "explanation"},
        {"id", "version", "probabilities"},
    ]
    baseline, contributions = model.explain(codes[2:5])
    explanation = replies[1]["explanation"]
    assert explanation["baseline"] == baseline
    np.testing.assert_array_equal(explanation["contributions"], contributions)
    assert replies[1]["probabilities"] == model.predict_proba(codes[2:5]).tolist()
    # a malformed neighbour sends the batch down the one-by-one path: still explained
    replies = score_batch(model, [["x", "zz"], *batch[1:2]])
    assert replies[0]["error"]["code"] == "bad_request"
    assert replies[1]["explanation"] == explanation
