"""Version-specific scoring on the workers' side: the batch item that names a version, the
bounded cache of versions other than production, and its revalidation against the registry's
listing each time the production model's follower checks the alias."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import NoProductionModelError, VersionNotFoundError
from shared.model.production import ProductionModel
from shared.model.scoring import (
    EXPLAIN,
    Scorer,
    ScorerCache,
    batch_item,
    encode_codes,
    item_version,
    score_batch,
    score_by_version,
)
from shared.model.training import TrainingRun, register_run
from shared.registry.versions import ModelRegistry


def _codes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    limits = [len(VOCABULARY[column]) for column in FEATURE_COLUMNS]
    return np.stack([rng.integers(0, limit, n) for limit in limits], axis=1).astype(np.int8)


class CountingRegistry:
    """A real registry whose loads are counted (the cache must load only on a miss)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.loads: list[str] = []

    def load(self, version: str) -> object:
        self.loads.append(version)
        return self.registry.load(version)

    def cache(self, size: int) -> ScorerCache:
        return ScorerCache(self.load, self.registry.storage.version_names, size)


@pytest.fixture
def three_versions(tmp_path: Path, two_runs: tuple[TrainingRun, TrainingRun]) -> ModelRegistry:
    """v1, v2 (production), v3 (v1's model again)."""
    registry = ModelRegistry(tmp_path / "models")
    for run in (*two_runs, two_runs[0]):
        register_run(registry, run, promote=False)
    registry.promote("v2")
    return registry


def _unlist(registry: ModelRegistry, version: str) -> None:
    """What deleting a version does to the listing (the folder leaves it)."""
    shutil.rmtree(registry.root / version)
    assert version not in registry.storage.version_names()


def test_production_items_keep_their_format_and_versioned_items_name_the_version() -> None:
    assert batch_item("1", "abc") == ["1", "abc"]
    assert batch_item("1", "abc", explain=True) == ["1", "abc", EXPLAIN]
    assert batch_item("1", "abc", version="v3") == ["1", "abc", "", "v3"]
    assert batch_item("1", "abc", explain=True, version="v3") == ["1", "abc", EXPLAIN, "v3"]
    assert [item_version(i) for i in (["1", "a"], ["1", "a", EXPLAIN], ["1", "a", "", "v3"])] == [
        None,
        None,
        "v3",
    ]


def test_the_cache_loads_a_listed_version_once_and_scores_it_like_its_pipeline(
    three_versions: ModelRegistry,
) -> None:
    counting = CountingRegistry(three_versions)
    cache = counting.cache(size=2)
    codes = _codes(300, 1)
    first = cache.get("v1")
    assert cache.get("v1") is first
    assert counting.loads == ["v1"]
    expected = Scorer("v1", three_versions.load("v1")).predict_proba(codes)
    np.testing.assert_array_equal(first.predict_proba(codes), expected)


def test_an_unlisted_version_is_never_loaded(three_versions: ModelRegistry) -> None:
    counting = CountingRegistry(three_versions)
    cache = counting.cache(size=2)
    for name in ("v9", "../v1", "v1/../v2", "V1", "v01"):
        with pytest.raises(VersionNotFoundError, match="not found"):
            cache.get(name)
    assert counting.loads == []


def test_the_least_recently_used_version_is_dropped_past_the_size(
    three_versions: ModelRegistry,
) -> None:
    counting = CountingRegistry(three_versions)
    cache = counting.cache(size=2)
    cache.get("v1")
    cache.get("v2")
    cache.get("v1")  # v2 is now the least recently used
    cache.get("v3")
    assert cache.versions() == ["v1", "v3"]
    cache.get("v2")  # loaded again
    assert counting.loads == ["v1", "v2", "v3", "v2"]
    assert cache.versions() == ["v3", "v2"]


def test_revalidation_drops_what_the_registry_no_longer_lists(
    three_versions: ModelRegistry,
) -> None:
    counting = CountingRegistry(three_versions)
    cache = counting.cache(size=3)
    for version in ("v1", "v3"):
        cache.get(version)
    assert cache.revalidate() == []
    _unlist(three_versions, "v3")
    assert cache.revalidate() == ["v3"]
    assert cache.versions() == ["v1"]
    with pytest.raises(VersionNotFoundError):
        cache.get("v3")
    assert counting.loads == ["v1", "v3"]


def test_a_listing_that_fails_empties_the_cache(three_versions: ModelRegistry) -> None:
    calls = {"n": 0}

    def listing() -> list[str]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("the store is unreachable")
        return three_versions.storage.version_names()

    cache = ScorerCache(three_versions.load, listing, 2)
    cache.get("v1")
    assert cache.revalidate() == ["v1"]
    assert cache.versions() == []


def test_the_follower_revalidates_the_cache_when_woken(three_versions: ModelRegistry) -> None:
    """With a poll far longer than the test, only the wake-up (what an announcement on the
    registry channel does) can make the check that drops the version."""
    cache = CountingRegistry(three_versions).cache(size=2)
    checked = threading.Event()

    def after_check() -> None:
        cache.revalidate()
        checked.set()

    holder = ProductionModel(three_versions, poll_seconds=3600, on_checked=after_check)
    holder.start()
    try:
        cache.get("v1")
        _unlist(three_versions, "v1")
        assert cache.versions() == ["v1"]  # nothing checked yet
        holder.wake("deletion")
        assert checked.wait(10), "the follower did not check within 10 s of the wake-up"
        assert cache.versions() == []
    finally:
        holder.stop()


def test_a_mixed_batch_is_scored_by_each_items_version_in_order(
    three_versions: ModelRegistry,
) -> None:
    production = Scorer("v2", three_versions.load("v2"))
    cache = CountingRegistry(three_versions).cache(size=2)

    def scorer_for(version: str | None) -> Scorer:
        return production if version is None else cache.get(version)

    codes = [_codes(n, seed) for seed, n in enumerate((2, 1, 3, 1, 2))]
    batch = [
        batch_item("a", encode_codes(codes[0])),
        batch_item("b", encode_codes(codes[1]), version="v1"),
        batch_item("c", encode_codes(codes[2]), explain=True),
        batch_item("d", encode_codes(codes[3]), version="v9"),
        batch_item("e", encode_codes(codes[4]), version="v1"),
    ]
    replies = score_by_version(batch, scorer_for)
    assert [r["id"] for r in replies] == ["a", "b", "c", "d", "e"]
    assert [r.get("version") for r in replies] == ["v2", "v1", "v2", None, "v1"]
    assert replies[3]["error"]["code"] == VersionNotFoundError.code
    assert "explanation" in replies[2] and "explanation" not in replies[0]
    v1 = Scorer("v1", three_versions.load("v1"))
    np.testing.assert_array_equal(replies[1]["probabilities"], v1.predict_proba(codes[1]))
    np.testing.assert_array_equal(replies[4]["probabilities"], v1.predict_proba(codes[4]))
    np.testing.assert_array_equal(replies[0]["probabilities"], production.predict_proba(codes[0]))


def test_a_production_only_batch_is_scored_as_before(three_versions: ModelRegistry) -> None:
    production = Scorer("v2", three_versions.load("v2"))
    batch = [batch_item(str(i), encode_codes(_codes(2, i)), explain=i == 1) for i in range(3)]
    assert score_by_version(batch, lambda _: production) == score_batch(production, batch)


def test_no_production_model_answers_every_item_with_the_error() -> None:
    def scorer_for(version: str | None) -> Scorer:
        raise NoProductionModelError("no production model yet: train one first")

    batch = [batch_item("1", encode_codes(_codes(1, 0)), explain=True), batch_item("2", "0000000")]
    replies = score_by_version(batch, scorer_for)
    assert [r["id"] for r in replies] == ["1", "2"]
    assert {r["error"]["code"] for r in replies} == {NoProductionModelError.code}
