import itertools
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import NoProductionModelError
from shared.model.pipeline import ModelParams
from shared.model.scoring import (
    ProductionModel,
    Scorer,
    decode_codes,
    encode_codes,
    score_batch,
)
from shared.model.training import register_run, train_model
from shared.registry.versions import ModelRegistry
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


def test_holder_follows_promotions_and_rollbacks(tmp_path: Path, make_dataset: MakeDataset) -> None:
    registry = ModelRegistry(tmp_path / "models")
    holder = ProductionModel(registry, poll_seconds=0.02)
    with pytest.raises(NoProductionModelError, match="train one first"):
        holder.current()
    data = make_dataset(20_000, 7)
    register_run(registry, train_model(data))
    register_run(registry, train_model(data, ModelParams(C=0.01)))
    assert holder.current().version == "v2"
    holder.start()
    try:
        registry.promote("v1")
        deadline = time.monotonic() + 5
        while holder.current().version != "v1" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder.current().version == "v1"
        registry.rollback()
        deadline = time.monotonic() + 5
        while holder.current().version != "v2" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder.current().version == "v2"
    finally:
        holder.stop()


def test_a_request_in_flight_keeps_its_model(tmp_path: Path, make_dataset: MakeDataset) -> None:
    """Swapping builds the new model first and replaces a reference: readers never see a gap."""
    registry = ModelRegistry(tmp_path / "models")
    data = make_dataset(20_000, 7)
    register_run(registry, train_model(data))
    register_run(registry, train_model(data, ModelParams(C=0.01)))
    holder = ProductionModel(registry, poll_seconds=0.005)
    holder.start()
    failures: list[BaseException] = []
    reads: Counter[str] = Counter()
    stop = threading.Event()

    def read() -> None:
        codes = every_code_row(1)
        while not stop.is_set():
            try:
                model = holder.current()
                model.predict_proba(codes)
                reads[model.version] += 1
            except BaseException as exc:  # any failure at all is the bug
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in itertools.islice(itertools.cycle(["v1", "v2"]), 20):
            before = reads[version]
            registry.promote(version)
            # the next swap waits for a read answered by this version: every swap is crossed
            # by reads however slow the machine, and nothing races the poll interval
            deadline = time.monotonic() + 10
            while reads[version] == before and time.monotonic() < deadline:
                time.sleep(0.001)
            assert reads[version] > before, f"no read answered by {version} within 10 s"
    finally:
        stop.set()
        reader.join(10)
        holder.stop()
    assert failures == []


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


def test_the_holder_calls_back_after_each_load(tmp_path: Path, make_dataset: MakeDataset) -> None:
    registry = ModelRegistry(tmp_path / "models")
    loaded: list[str] = []
    holder = ProductionModel(registry, on_loaded=lambda model: loaded.append(model.version))
    register_run(registry, train_model(make_dataset(20_000, 7)))
    assert holder.current().version == "v1"
    assert not holder.refresh()  # nothing changed: no load, no call
    assert loaded == ["v1"]
