"""Fixtures of the serving side's tests: two trained versions in a registry of the test's own,
and the swaps a serving model logged."""

import time
from pathlib import Path

import pytest

from shared.model.pipeline import ModelParams
from shared.model.training import TrainingRun, register_run, train_model
from shared.registry.versions import ModelRegistry
from tests.conftest import MakeDataset


def swaps(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(version, trigger) of every swap logged so far."""
    return [
        (r.__dict__["model_version"], r.__dict__["trigger"])
        for r in caplog.records
        if r.name == "shared.model.production" and r.getMessage().startswith("serving model")
    ]


def wait_for_swaps(caplog: pytest.LogCaptureFixture, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` swaps are logged (a swap is logged just after the model is replaced)."""
    deadline = time.monotonic() + timeout
    while len(swaps(caplog)) < count:
        assert time.monotonic() < deadline, f"{count} swaps not logged within {timeout} s"
        time.sleep(0.005)


@pytest.fixture(scope="session")
def two_runs(make_dataset: MakeDataset) -> tuple[TrainingRun, TrainingRun]:
    """Two trainings, run once: each test saves them into a registry of its own."""
    data = make_dataset(20_000, 7)
    return train_model(data), train_model(data, ModelParams(C=0.01))


@pytest.fixture
def two_versions(tmp_path: Path, two_runs: tuple[TrainingRun, TrainingRun]) -> ModelRegistry:
    """A registry with v1 and v2, v2 in production."""
    registry = ModelRegistry(tmp_path / "models")
    for run in two_runs:
        register_run(registry, run)
    return registry
