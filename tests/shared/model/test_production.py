"""The production model of a serving process: it follows the alias, woken by announcements or by
its own poll, and swaps versions with no gap (the announcements themselves, over a real Redis,
are in tests/shared/test_registry_events.py)."""

import itertools
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from shared.data.schema import FEATURE_COLUMNS
from shared.errors import IntegrityError, NoProductionModelError
from shared.model.production import ProductionModel
from shared.model.training import TrainingRun, register_run, train_model
from shared.registry.versions import ModelRegistry
from tests.conftest import MakeDataset
from tests.shared.conftest import swaps, wait_for_swaps


def one_row() -> np.ndarray:
    return np.zeros((1, len(FEATURE_COLUMNS)), dtype=np.int8)


def wait_for_version(holder: ProductionModel, version: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while holder.current().version != version:
        assert time.monotonic() < deadline, f"{version} not served within {timeout} s"
        time.sleep(0.005)


def test_holder_follows_promotions_and_rollbacks(
    tmp_path: Path, two_runs: tuple[TrainingRun, TrainingRun]
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    holder = ProductionModel(registry, poll_seconds=0.02)
    with pytest.raises(NoProductionModelError, match="train one first"):
        holder.current()
    for run in two_runs:
        register_run(registry, run)
    assert holder.current().version == "v2"
    holder.start()
    try:
        registry.promote("v1")
        wait_for_version(holder, "v1")
        registry.rollback()
        wait_for_version(holder, "v2")
    finally:
        holder.stop()


def test_a_wake_up_checks_the_alias_at_once(
    two_versions: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """With a poll far longer than the test, only the wake-up can make the swap."""
    holder = ProductionModel(two_versions, poll_seconds=3600)
    assert holder.current().version == "v2"
    holder.start()
    try:
        caplog.clear()  # only swaps from here on (the first load may be in it)
        with caplog.at_level(logging.INFO, logger="shared.model.production"):
            two_versions.promote("v1")
            holder.wake("notification")
            wait_for_swaps(caplog, 1)
        assert swaps(caplog) == [("v1", "notification")]
        assert holder.current().version == "v1"
    finally:
        holder.stop()


def test_without_a_wake_up_the_poll_finds_the_change(
    two_versions: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    holder = ProductionModel(two_versions, poll_seconds=0.05)
    assert holder.current().version == "v2"
    holder.start()
    try:
        caplog.clear()  # only swaps from here on (the first load may be in it)
        with caplog.at_level(logging.INFO, logger="shared.model.production"):
            two_versions.promote("v1")
            wait_for_swaps(caplog, 1)
        assert swaps(caplog) == [("v1", "poll")]
    finally:
        holder.stop()


def test_a_version_that_cannot_be_loaded_keeps_the_old_one_serving(
    two_versions: ModelRegistry, make_dataset: MakeDataset
) -> None:
    """A tampered artifact is refused (its checksum fails): the follower keeps the model it
    has, and still takes the next good promotion."""
    holder = ProductionModel(two_versions, poll_seconds=3600)
    assert holder.current().version == "v2"
    artifact = two_versions.root / "v1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    holder.start()
    try:
        two_versions.promote("v1")
        with pytest.raises(IntegrityError):
            holder.refresh()  # what the woken follower meets, seen here directly
        holder.wake()
        assert holder.current().version == "v2"
        good = register_run(two_versions, train_model(make_dataset(20_000, 7))).version.version
        holder.wake()
        wait_for_version(holder, good)
    finally:
        holder.stop()


def test_a_request_in_flight_keeps_its_model(two_versions: ModelRegistry) -> None:
    """Swapping builds the new model first and replaces a reference: readers never see a gap."""
    holder = ProductionModel(two_versions, poll_seconds=0.005)
    holder.start()
    failures: list[BaseException] = []
    reads: Counter[str] = Counter()
    stop = threading.Event()

    def read() -> None:
        codes = one_row()
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
            two_versions.promote(version)
            holder.wake()
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


def test_the_holder_calls_back_after_each_load(
    tmp_path: Path, two_runs: tuple[TrainingRun, TrainingRun]
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    loaded: list[str] = []
    holder = ProductionModel(registry, on_loaded=lambda model: loaded.append(model.version))
    register_run(registry, two_runs[0])
    assert holder.current().version == "v1"
    assert not holder.refresh()  # nothing changed: no load, no call
    assert loaded == ["v1"]


def test_stop_ends_the_follower_promptly(two_versions: ModelRegistry) -> None:
    holder = ProductionModel(two_versions, poll_seconds=3600)
    holder.start()
    thread = holder._thread
    assert thread is not None and thread.is_alive()
    holder.stop()
    thread.join(5)
    assert not thread.is_alive()
