"""Fixtures every test folder uses: small synthetic datasets and an empty registry."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.data.synthetic import write_synthetic_csv
from shared.registry.versions import ModelRegistry

MakeDataset = Callable[..., Path]

#: Set by ``make test-fast``, which leaves out the tests that need a program from outside the
#: venv: one that reaches for such a program anyway is marked wrongly, and fails saying so.
WITHOUT_SERVICES = "RVT_TESTS_WITHOUT_SERVICES"


def refuse_without_services(what: str, marker: str) -> None:
    """Fail a test that needs ``what`` in a run that promised to need none of it."""
    if os.environ.get(WITHOUT_SERVICES) == "1":
        pytest.fail(
            f"this test needs {what}, which `make test-fast` must not: mark it {marker!r}",
            pytrace=False,
        )


#: A case the model should call severe: every test folder predicts it.
SEVERE_CASE = {
    "current_status": "Laboratory-confirmed case",
    "sex": "Male",
    "age_group": "80+ Years",
    "race_ethnicity_combined": "White, Non-Hispanic",
    "hosp_yn": "Yes",
    "icu_yn": "Yes",
    "medcond_yn": "Yes",
}


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def make_dataset(dataset_cache: Path) -> MakeDataset:
    """A synthetic CSV of ``rows`` rows for ``seed``, written once per session and shared
    read-only (tests that change a file copy it first)."""

    def make(rows: int = 20_000, seed: int = 7) -> Path:
        path = dataset_cache / f"synthetic_{rows}_{seed}.csv"
        if not path.exists():
            write_synthetic_csv(path, rows, seed=seed)
        return path

    return make


@pytest.fixture
def small_dataset(make_dataset: MakeDataset) -> Path:
    return make_dataset(20_000, 7)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")
