import os
import time
from pathlib import Path

import pytest

from shared.data.store import UPLOAD_PREFIX, DatasetStore
from shared.errors import DatasetNotFoundError


def test_names_come_from_the_folder_listing(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.csv").write_text("x")
    store = DatasetStore(tmp_path, "default.csv", 100)
    assert [info.name for info in store.list()] == ["cases.csv"]
    assert store.get("cases.csv").path == tmp_path / "cases.csv"
    for name in ["../cases.csv", "/etc/passwd", "notes.txt", ".hidden.csv", "default.csv"]:
        with pytest.raises(DatasetNotFoundError) as caught:
            store.get(name)
        assert caught.value.details["allowed"] == ["cases.csv"]


def test_default_dataset_is_made_once(tmp_path: Path) -> None:
    """A second call keeps the file as it is (checked by its content, which a rewrite would
    restore, not by its mtime, which a coarse clock may not move)."""
    store = DatasetStore(tmp_path / "data", "default.csv", 1_000)
    first = store.ensure_default()
    assert len(first.path.read_text().splitlines()) == 1_001
    with first.path.open("a") as file:
        file.write(first.path.read_text().splitlines()[1] + "\n")
    assert len(store.ensure_default().path.read_text().splitlines()) == 1_002


def test_stale_partial_uploads_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"{UPLOAD_PREFIX}abc.part"
    fresh = tmp_path / f"{UPLOAD_PREFIX}def.part"
    stale.write_text("x")
    fresh.write_text("x")
    (tmp_path / "kept.csv").write_text("x")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert DatasetStore(tmp_path, "d.csv", 1).cleanup_partial_uploads(3600) == 1
    assert not stale.exists() and fresh.exists() and (tmp_path / "kept.csv").exists()
