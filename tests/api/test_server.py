"""The API launcher's metrics folder (the processes it starts are tested in
tests/integration/test_scale_out.py)."""

from pathlib import Path

import pytest

from api.metrics import multiprocess_folder
from api.server import prepare_metrics_folder


def test_a_configured_folder_is_emptied_of_metrics_files_only(tmp_path: Path) -> None:
    """Files a previous run left would be counted again (a new process may even reuse an old
    pid, and so its file)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_12.db").write_bytes(b"old counts")
    (folder / "histogram_12.db").write_bytes(b"old counts")
    (folder / "notes.txt").write_text("not ours")
    prepared, temporary = prepare_metrics_folder(folder)
    assert (prepared, temporary) == (folder, False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_missing_configured_folder_is_made(tmp_path: Path) -> None:
    prepared, temporary = prepare_metrics_folder(tmp_path / "a" / "b")
    assert prepared.is_dir() and not temporary


def test_without_a_folder_a_fresh_temporary_one(tmp_path: Path) -> None:
    first, temporary = prepare_metrics_folder(None)
    second, _ = prepare_metrics_folder(None)
    try:
        assert temporary and first != second
        assert first.is_dir() and not any(first.iterdir())
    finally:
        first.rmdir()
        second.rmdir()


def test_a_folder_named_after_prometheus_client_was_imported_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """This test process imported prometheus_client without the variable: its counters live in
    memory, and a scrape reading the folder would count none of them."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert multiprocess_folder() is None
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="set it before the process starts"):
        multiprocess_folder()
