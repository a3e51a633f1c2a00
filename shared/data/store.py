"""The datasets folder: what can be trained on, looked up by name, never by a client's path."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from shared.data.loader import DatasetSummary, validate_dataset
from shared.data.synthetic import write_synthetic_csv
from shared.errors import DatasetNotFoundError, UploadTooLargeError, disk_full_means

#: A dataset name: a ``.csv`` file name of the datasets folder (the API documents it).
DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.csv$"
_NAME = re.compile(DATASET_NAME_PATTERN)
DEFAULT_SEED = 20200122  # the day of the first case report in the CDC surveillance summary
#: Uploads in progress: hidden and not ``*.csv``, so :meth:`DatasetStore.list` never shows one.
UPLOAD_PREFIX = ".upload-"
_COPY_CHUNK = 1 << 20
_STEM_MAX = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def upload_name(filename: str | None) -> str:
    """A safe, fresh dataset name from whatever a client calls its file.

    Only the last path component's stem survives, reduced to ``[A-Za-z0-9._-]``, plus a random
    suffix so that two uploads of ``data.csv`` never collide and a name cannot be predicted.
    """
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = base[: -len(".csv")] if base.lower().endswith(".csv") else base
    cleaned = _UNSAFE.sub("_", stem).strip("._-")[:_STEM_MAX].strip("._-") or "upload"
    return f"{cleaned}-{secrets.token_hex(4)}.csv"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    path: Path
    size_bytes: int
    modified_at: str


class DatasetStore:
    """A flat folder of ``*.csv`` files. Names come from the folder's own listing, so a name
    sent by a client is matched against it and never joined into a path."""

    def __init__(self, root: Path, default_name: str, default_rows: int) -> None:
        self.root = root
        self.default_name = default_name
        self.default_rows = default_rows

    def list(self) -> list[DatasetInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.iterdir()):
            if path.is_file() and _NAME.match(path.name):
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
                out.append(DatasetInfo(path.name, path, stat.st_size, modified))
        return out

    def get(self, name: str) -> DatasetInfo:
        for info in self.list():
            if info.name == name:
                return info
        known = [info.name for info in self.list()]
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}", details={"field": "dataset", "allowed": known}
        )

    def ensure_default(self) -> DatasetInfo:
        """Make the synthetic default dataset on first use (once, even with several callers)."""
        target = self.root / self.default_name
        if target.is_file():
            return self.get(self.default_name)
        with disk_full_means("the default dataset was not generated"):
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / ".default.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not target.is_file():
                    write_synthetic_csv(target, self.default_rows, seed=DEFAULT_SEED)
        return self.get(self.default_name)

    def store_upload(
        self,
        source: BinaryIO | io.RawIOBase,
        filename: str | None,
        max_bytes: int,
        chunk_rows: int = 250_000,
    ) -> DatasetSummary:
        """Copy an upload into the folder and publish it under a server-chosen name, only if it
        is a usable dataset; otherwise nothing is left behind.

        The bytes go to a hidden temp file in the folder itself, so publishing is a link on the
        same filesystem (atomic, and never replaces an existing dataset), and readers never
        see a partial or unvalidated file. ``source`` is read in chunks; crossing ``max_bytes``
        stops the copy at once with :class:`UploadTooLargeError`; a full disk is a
        :class:`~shared.errors.StorageFullError`, the temp file removed. ``filename`` is only a
        hint for the name (see :func:`upload_name`); it is never used as a path.
        """
        with disk_full_means("the upload was not stored"):
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, suffix=".part", dir=self.root)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    size = 0
                    while chunk := source.read(_COPY_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise UploadTooLargeError(
                                f"the upload is larger than the limit of {max_bytes} bytes",
                                details={"max_bytes": max_bytes},
                            )
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                summary = validate_dataset(tmp, chunk_rows)
                name = self._publish(tmp, filename)
            finally:
                tmp.unlink(missing_ok=True)
        return replace(summary, name=name)

    def cleanup_partial_uploads(self, older_than_seconds: float = 3600) -> int:
        """Remove temp files of uploads that a crashed process never finished (an upload in
        progress keeps writing, so its file is never that old)."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self.root.glob(f"{UPLOAD_PREFIX}*.part"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def _publish(self, tmp: Path, filename: str | None) -> str:
        while True:
            name = upload_name(filename)
            try:
                os.link(tmp, self.root / name)
            except FileExistsError:  # a 32-bit suffix collided: draw another
                continue
            return name
