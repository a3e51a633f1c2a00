"""The dataset store's promises on both storages (a local folder, and the session's SeaweedFS),
and what only an object store has: datasets put there by other tools, validated on first use."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import shared.data.fast_reader
from shared import stores
from shared.data.store import DatasetStore
from shared.errors import DataError, DatasetNotFoundError, UploadTooLargeError
from shared.model.training import train_model
from shared.settings import Settings
from shared.storage.location import S3Location
from shared.storage.s3 import PART_BYTES
from tests.conftest import MakeDataset

HEADER = "current_status,sex,age_group,race_ethnicity_combined,hosp_yn,icu_yn,medcond_yn,death_yn\n"
ROW = "Laboratory-confirmed case,Male,80+ Years,Unknown,Yes,No,Yes,No\n"
NO_DEATHS = HEADER + ROW * 20


class Raw:
    """What is really stored, seen without the store: files, or objects (and unfinished
    multipart uploads) under the prefix."""

    def __init__(self, store: DatasetStore, settings: Settings | None) -> None:
        self.store = store
        self.settings = settings

    @property
    def location(self) -> S3Location:
        assert self.settings is not None and isinstance(self.settings.data_dir, S3Location)
        return self.settings.data_dir

    def client(self) -> Any:
        assert self.settings is not None
        return stores.object_store(self.settings, self.location).client

    def names(self) -> list[str]:
        if self.settings is None:
            root = self.store.root
            return sorted(p.name for p in root.iterdir()) if root.exists() else []
        reply = self.client().list_objects_v2(
            Bucket=self.location.bucket, Prefix=self.location.prefix
        )
        unfinished = self.client().list_multipart_uploads(
            Bucket=self.location.bucket, Prefix=self.location.prefix
        )
        keys = [item["Key"] for item in reply.get("Contents", [])]
        keys += [f"(unfinished) {item['Key']}" for item in unfinished.get("Uploads", [])]
        return sorted(key.replace(self.location.prefix, "", 1) for key in keys)

    def put(self, name: str, data: bytes) -> None:
        """As another tool would: a file copied in, or a plain boto3 put_object."""
        if self.settings is None:
            self.store.root.mkdir(parents=True, exist_ok=True)
            (self.store.root / name).write_bytes(data)
        else:
            self.client().put_object(
                Bucket=self.location.bucket, Key=self.location.key(name), Body=data
            )

    def get(self, name: str) -> bytes:
        if self.settings is None:
            return (self.store.root / name).read_bytes()
        reply = self.client().get_object(Bucket=self.location.bucket, Key=self.location.key(name))
        return bytes(reply["Body"].read())


def s3_raw_for(settings: Settings) -> Raw:
    settings = settings.model_copy(
        update={"default_dataset": "default.csv", "default_dataset_rows": 1_000}
    )
    return Raw(stores.dataset_store(settings), settings)


@pytest.fixture(params=["local", "s3"])
def raw(request: pytest.FixtureRequest, tmp_path: Path) -> Raw:
    if request.param == "local":
        return Raw(DatasetStore(tmp_path / "data", "default.csv", 1_000), None)
    return s3_raw_for(request.getfixturevalue("s3_settings"))


@pytest.fixture
def s3_raw(s3_settings: Settings) -> Raw:
    return s3_raw_for(s3_settings)


def upload(store: DatasetStore, data: bytes, max_bytes: int = 1 << 30) -> Any:
    return store.store_upload(io.BytesIO(data), "../../My Cases.csv", max_bytes, chunk_rows=5_000)


# -- both storages ----------------------------------------------------------------------------


def test_names_come_from_the_listing(raw: Raw, make_dataset: MakeDataset) -> None:
    data = make_dataset(1_000, 1).read_bytes()
    for name in ("cases.csv", "notes.txt", ".hidden.csv"):
        raw.put(name, data)
    store = raw.store
    assert [info.name for info in store.list()] == ["cases.csv"]
    assert store.get("cases.csv").size_bytes == len(data)
    for name in ["../cases.csv", "/etc/passwd", "notes.txt", ".hidden.csv", "default.csv"]:
        with pytest.raises(DatasetNotFoundError) as caught:
            store.get(name)
        assert caught.value.details["allowed"] == ["cases.csv"]


def test_an_upload_is_stored_under_a_name_the_server_chooses(
    raw: Raw, make_dataset: MakeDataset
) -> None:
    # Larger than one part: a real multipart upload on S3.
    data = make_dataset(80_000, 2).read_bytes()
    assert len(data) > PART_BYTES
    summary = upload(raw.store, data)
    assert summary.name.startswith("My_Cases-") and summary.name.endswith(".csv")
    assert summary.rows == 80_000 and summary.size_bytes == len(data)
    assert [info.name for info in raw.store.list()] == [summary.name]
    assert raw.get(summary.name) == data
    leftovers = [n for n in raw.names() if n != summary.name and not n.startswith("_checks/")]
    assert leftovers == []


@pytest.mark.parametrize("size", ["small", "multipart"])
def test_an_invalid_upload_leaves_nothing(raw: Raw, size: str) -> None:
    body = NO_DEATHS.encode()
    if size == "multipart":  # refused only after the whole file was read
        body = (HEADER + ROW * (PART_BYTES // len(ROW) + 10)).encode()
    with pytest.raises(DataError, match="death_yn = No"):
        upload(raw.store, body)
    assert raw.store.list() == []
    assert raw.names() == []


def test_an_upload_over_the_limit_stops_at_once_and_leaves_nothing(
    raw: Raw, make_dataset: MakeDataset
) -> None:
    data = make_dataset(80_000, 2).read_bytes()
    with pytest.raises(UploadTooLargeError) as caught:
        upload(raw.store, data, max_bytes=PART_BYTES + 1000)
    assert caught.value.details == {"max_bytes": PART_BYTES + 1000}
    assert raw.names() == []


def test_the_default_dataset_is_made_once(raw: Raw) -> None:
    first = raw.store.ensure_default()
    assert first.name == "default.csv"
    content = raw.get("default.csv")
    assert len(content.splitlines()) == 1_001
    raw.put("default.csv", content + content.splitlines(keepends=True)[1])
    assert len(raw.get(raw.store.ensure_default().name).splitlines()) == 1_002


def test_a_dataset_put_by_another_tool_is_listed_and_trains(
    raw: Raw, make_dataset: MakeDataset
) -> None:
    data = make_dataset(20_000, 7).read_bytes()
    raw.put("dropped.csv", data)
    info = raw.store.get("dropped.csv")
    run = train_model(raw.store.training_source(info), chunk_rows=5_000, dataset_name=info.name)
    assert run.metadata["rows"]["read"] == 20_000
    assert run.metadata["dataset"]["size_bytes"] == len(data)
    local = train_model(make_dataset(20_000, 7), chunk_rows=5_000)
    assert run.metadata["dataset"]["sha256"] == local.metadata["dataset"]["sha256"]
    assert run.metadata["metrics"] == local.metadata["metrics"]


# -- what only an object store has ------------------------------------------------------------


def test_a_foreign_object_is_validated_once_and_a_refusal_remembered(s3_raw: Raw) -> None:
    s3_raw.put("bad.csv", NO_DEATHS.encode())
    info = s3_raw.store.get("bad.csv")  # listed before anyone looked inside
    with pytest.raises(DataError, match="death_yn = No") as first:
        s3_raw.store.training_source(info)
    assert "_checks/bad.csv.json" in s3_raw.names()
    # The refusal is remembered for this ETag: the same message without reading the object
    # (gone now: reading it would be a "not found").
    client = s3_raw.client()
    client.delete_object(Bucket=s3_raw.location.bucket, Key=s3_raw.location.key("bad.csv"))
    with pytest.raises(DataError) as again:
        s3_raw.store.training_source(info)
    assert again.value.message == first.value.message
    # Put back with other content (a new ETag), it is validated again, and now passes.
    s3_raw.put("bad.csv", NO_DEATHS.replace("Yes,No\n", "Yes,Yes\n", 1).encode())  # one death
    fixed = s3_raw.store.get("bad.csv")
    assert fixed.etag != info.etag
    assert s3_raw.store.training_source(fixed).name == "bad.csv"


def test_training_streams_the_object_in_bounded_memory(
    s3_raw: Raw, make_dataset: MakeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 50 MB object read through the loader in segments of 1 MiB: Python's allocations stay a
    few segments and a chunk of parsed rows, far below the object's size."""
    monkeypatch.setattr(shared.data.fast_reader, "SEGMENT_BYTES", 1 << 20)
    data = make_dataset(400_000, 5).read_bytes()
    s3_raw.put("big.csv", data)
    source = s3_raw.store.source(s3_raw.store.get("big.csv"))
    tracemalloc.start()
    try:
        from shared.data.loader import validate_dataset

        summary = validate_dataset(source, chunk_rows=20_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.rows == 400_000
    assert peak < len(data) / 4, f"peak {peak:,} bytes for a {len(data):,}-byte object"


def test_cleanup_removes_stale_staged_uploads_only(s3_raw: Raw, make_dataset: MakeDataset) -> None:
    s3_raw.put("_uploads/abandoned.csv", b"partial")
    s3_raw.put("kept.csv", make_dataset(1_000, 1).read_bytes())
    assert s3_raw.store.cleanup_partial_uploads(3600) == 0  # fresh: could be in progress
    assert s3_raw.store.cleanup_partial_uploads(0) == 1
    assert s3_raw.names() == ["kept.csv"]
