"""DatasetStore.store_upload and upload_name, without HTTP."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from shared.data.store import DatasetStore, upload_name
from shared.errors import DataError, UploadTooLargeError
from tests.conftest import MakeDataset


@pytest.mark.parametrize(
    ("filename", "stem"),
    [
        ("../../etc/passwd.csv", "passwd"),
        ("C:\\Users\\me\\cases 2021.CSV", "cases_2021"),
        ("..", "upload"),
        ("", "upload"),
        (None, "upload"),
        (".hidden.csv", "hidden"),
        ("résumé.csv", "r_sum"),
        ("a" * 300 + ".csv", "a" * 48),
    ],
)
def test_upload_names_are_safe(filename: str | None, stem: str) -> None:
    name = upload_name(filename)
    assert re.fullmatch(re.escape(stem) + r"-[0-9a-f]{8}\.csv", name), name
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.csv", name)


def test_store_upload_publishes_a_valid_file(tmp_path: Path, make_dataset: MakeDataset) -> None:
    root = tmp_path / "data"
    store = DatasetStore(root, "default.csv", 1000)
    content = make_dataset(5_000, 3).read_bytes()
    summary = store.store_upload(io.BytesIO(content), "cases.csv", max_bytes=len(content))
    assert summary.name.startswith("cases-") and summary.rows == 5_000
    assert [info.name for info in store.list()] == [summary.name]
    assert [p.name for p in root.iterdir()] == [summary.name]


def test_store_upload_stops_at_the_limit_and_cleans_up(
    tmp_path: Path, make_dataset: MakeDataset
) -> None:
    root = tmp_path / "data"
    store = DatasetStore(root, "default.csv", 1000)
    content = make_dataset(5_000, 3).read_bytes()

    class Counting(io.BytesIO):
        read_calls = 0

        def read(self, size: int | None = -1) -> bytes:
            Counting.read_calls += 1
            return super().read(size)

    with pytest.raises(UploadTooLargeError):
        store.store_upload(Counting(content * 20), "big.csv", max_bytes=len(content))
    assert Counting.read_calls <= 2  # stopped at the first chunk past the limit
    assert list(root.iterdir()) == []


def test_store_upload_refuses_a_bad_file_and_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = DatasetStore(root, "default.csv", 1000)
    with pytest.raises(DataError):
        store.store_upload(io.BytesIO(b"PK\x03\x04zip"), "book.xlsx", max_bytes=1_000)
    assert list(root.iterdir()) == []
