"""The disk full while saving a model version or storing an upload (or generating the default
dataset).

``MODELS_DIR`` and ``DATA_DIR`` live on a small tmpfs mounted for the test (``mount(2)``, so
root only: elsewhere the tests skip, but under ``CI=true`` they fail), filled to the last page
by a filler file. A write that does not fit must be a clear error (:class:`StorageFullError`,
a 507 through the API's one error handler), leave nothing half-written (no version, nothing in
staging, the alias as it was, no ``.part`` file, not a page of the disk kept), and the service
must keep answering as before: ``GET /models``, ``GET /datasets``, predictions from the version
in production. Run with ``pytest -s`` to see the counts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.services import Services
from shared.data.store import UPLOAD_PREFIX, DatasetStore
from shared.errors import StorageFullError
from shared.jobs.store import JobStore
from shared.model.training import train_model
from shared.presence import WorkerPresence
from shared.registry.versions import ModelRegistry
from shared.settings import Settings
from tests.api.conftest import FakePredictionClient, FakeTrainingQueue, assert_error
from tests.conftest import SEVERE_CASE, MakeDataset

DEFAULT_DATASET = "synthetic_default.csv"
DISK_SIZE = 8 * 1024 * 1024
MNT_DETACH = 2


class SmallDisk:
    """A tmpfs of our own, and a filler file to make it full."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    @property
    def page(self) -> int:
        return os.statvfs(self.path).f_bsize

    @property
    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave: int = 0) -> int:
        """Fill the disk to its last page, then give back ``leave`` bytes (rounded up to whole
        pages); return the free bytes."""
        with open(self.filler, "ab", buffering=0) as f:
            block = b"\xff" * self.page
            try:
                while True:
                    f.write(block)
            except OSError as exc:
                assert StorageFullError.caused(exc), exc
        pages = -(-leave // self.page)
        os.truncate(self.filler, max(0, self.filler.stat().st_size - pages * self.page))
        assert self.free == pages * self.page
        return self.free

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    libc = _libc()
    options = f"size={DISK_SIZE},mode=0755".encode()
    if libc.mount(b"tmpfs", bytes(mountpoint), b"tmpfs", 0, options) != 0:
        reason = f"cannot mount a tmpfs at {mountpoint}: {os.strerror(ctypes.get_errno())}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true: the disk-full tests must run (as root)")
        pytest.skip(f"{reason} (the disk-full tests need root)")
    try:
        yield SmallDisk(mountpoint)
    finally:
        if libc.umount2(bytes(mountpoint), 0) != 0:
            # Something still holds a file open there: detach it anyway, and say so.
            error = os.strerror(ctypes.get_errno())
            libc.umount2(bytes(mountpoint), MNT_DETACH)
            pytest.fail(f"the tmpfs at {mountpoint} was busy ({error}); detached lazily")


@pytest.fixture(scope="module")
def trained(make_dataset: MakeDataset) -> tuple[Any, dict[str, Any]]:
    """A real fitted pipeline (predictions go through it) and its training metadata."""
    run = train_model(make_dataset(20_000, 7))
    assert run.gate.passed
    return run.pipeline, {**run.metadata, "promote_requested": True}


@pytest.fixture
def service(
    disk: SmallDisk, trained: tuple[Any, dict[str, Any]], make_dataset: MakeDataset
) -> Iterator[tuple[TestClient, ModelRegistry, Path]]:
    """The API in process on the small disk: v1 in production (after v2, so that a rollback
    has somewhere to go), v2 saved, and the default dataset."""
    pipeline, metadata = trained
    models_dir, data_dir = disk.path / "models", disk.path / "data"
    registry = ModelRegistry(models_dir)
    for _ in range(2):
        registry.save_version(pipeline, metadata)
    registry.promote("v2")
    registry.promote("v1")
    data_dir.mkdir()
    shutil.copy(make_dataset(2_000, 7), data_dir / DEFAULT_DATASET)
    settings = Settings(
        models_dir=models_dir,
        data_dir=data_dir,
        default_dataset=DEFAULT_DATASET,
        default_dataset_rows=2_000,
        redis_url="redis://127.0.0.1:1/0",  # never used: every client here is fake
    )
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    services = Services(
        settings=settings,
        redis=redis,
        jobs=JobStore(redis, prefix="test", lease_seconds=15),
        presence=WorkerPresence(redis, prefix="test", ttl_seconds=10),
        registry=registry,
        datasets=DatasetStore(data_dir, DEFAULT_DATASET, settings.default_dataset_rows),
        training_queue=FakeTrainingQueue(),
        prediction_client=FakePredictionClient(registry),
    )
    with TestClient(create_app(settings, services)) as client:
        yield client, registry, data_dir


def registry_files(root: Path) -> dict[str, bytes]:
    """Every file of the registry, staging and lock included, by path."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def assert_still_serving(client: TestClient, models_before: Any, datasets_before: Any) -> None:
    models = client.get("/models")
    assert models.status_code == 200, models.text
    assert models.json() == models_before
    datasets = client.get("/datasets")
    assert datasets.status_code == 200, datasets.text
    assert datasets.json() == datasets_before
    answer = client.post("/predict", json={"records": [SEVERE_CASE]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "v1"


def test_a_version_or_an_alias_that_does_not_fit_is_a_clear_error_and_leaves_nothing(
    disk: SmallDisk,
    service: tuple[TestClient, ModelRegistry, Path],
    trained: tuple[Any, dict[str, Any]],
) -> None:
    client, registry, _ = service
    pipeline, metadata = trained
    artifact = io.BytesIO()
    joblib.dump(pipeline, artifact)
    big = {"pipeline": pipeline, "padding": np.ones(DISK_SIZE // 8)}  # larger than the disk
    cases: list[tuple[str, int, Callable[[], object]]] = [
        ("a version larger than the free space", 64 * 1024, lambda: registry.save_version(big, {})),
        ("a version on a disk with no page free", 0, lambda: registry.save_version(pipeline, {})),
        # The artifact fits to its last page: the metadata written after it does not.
        (
            "room for the artifact, none for its metadata",
            len(artifact.getvalue()),
            lambda: registry.save_version(pipeline, metadata),
        ),
        ("a promotion", 0, lambda: registry.promote("v2")),
        ("a rollback", 0, lambda: registry.rollback()),
    ]
    files_before = registry_files(registry.root)
    models_before = client.get("/models").json()
    datasets_before = client.get("/datasets").json()
    assert models_before["production"] == "v1"
    for what, leave, operation in cases:
        free = disk.fill(leave)
        with pytest.raises(StorageFullError) as caught:
            operation()
        error = caught.value
        assert (error.status_code, error.code) == (507, "storage_full"), what
        assert "the disk is full" in error.message, error.message
        # Nothing half-written, and not a page kept by a leftover (open or hidden).
        assert registry_files(registry.root) == files_before, what
        assert list((registry.root / ".staging").iterdir()) == [], what
        assert [info.version for info in registry.list_versions()] == ["v1", "v2"]
        assert registry.production_version() == "v1"
        assert disk.free == free, f"{what}: {free - disk.free} bytes not given back"
        assert_still_serving(client, models_before, datasets_before)
        disk.empty()
    # With room again, the next save gets the next number: no failed attempt used one up.
    assert registry.save_version(pipeline, metadata).version == "v3"
    assert registry.promote("v3").version == "v3"
    print(
        f"\ndisk full (registry): {len(cases)} writes that did not fit -> {len(cases)} "
        "StorageFullError (507), 0 versions or staging files left, alias unchanged, "
        "GET /models and POST /predict 200 throughout; the next save was v3"
    )


def test_an_upload_that_does_not_fit_is_a_507_and_leaves_nothing(
    disk: SmallDisk, service: tuple[TestClient, ModelRegistry, Path], make_dataset: MakeDataset
) -> None:
    client, _, data_dir = service
    content = make_dataset(5_000, 11).read_bytes()  # valid, and well under the upload limit
    models_before = client.get("/models").json()
    datasets_before = client.get("/datasets").json()
    refused = 0
    for leave in (0, 64 * 1024, len(content) // 2):
        free = disk.fill(leave)
        response = client.post("/datasets", files={"file": ("cases.csv", content, "text/csv")})
        error = assert_error(response, 507, "storage_full")
        assert "the disk is full" in error["message"], error
        assert "upload" in error["message"], error
        refused += 1
        assert sorted(data_dir.glob(f"{UPLOAD_PREFIX}*")) == []
        assert sorted(p.name for p in data_dir.iterdir()) == [DEFAULT_DATASET]
        assert disk.free == free, f"{free - disk.free} bytes not given back"
        assert_still_serving(client, models_before, datasets_before)
        disk.empty()
    # With room again, the same upload is stored.
    response = client.post("/datasets", files={"file": ("cases.csv", content, "text/csv")})
    assert response.status_code == 201, response.text
    stored = response.json()["name"]
    assert stored in [d["name"] for d in client.get("/datasets").json()["datasets"]]
    assert (data_dir / stored).read_bytes() == content
    print(
        f"\ndisk full (uploads): {refused} uploads that did not fit -> {refused} x 507 "
        "storage_full, 0 .part files left, GET /datasets unchanged, the API answering "
        "throughout; with room again the upload was stored"
    )


def test_the_default_dataset_on_a_full_disk_is_a_clear_error_and_leaves_nothing(
    disk: SmallDisk,
) -> None:
    """A training on the default dataset generates it on first use (``ensure_default``)."""
    data_dir = disk.path / "data"
    store = DatasetStore(data_dir, DEFAULT_DATASET, 20_000)  # about 2.5 MB of CSV
    free = disk.fill(64 * 1024)
    with pytest.raises(StorageFullError, match="the disk is full") as caught:
        store.ensure_default()
    assert caught.value.status_code == 507
    assert store.list() == []
    assert sorted(p.name for p in data_dir.iterdir()) == [".default.lock"]
    assert disk.free == free
    disk.empty()
    assert store.ensure_default().name == DEFAULT_DATASET
