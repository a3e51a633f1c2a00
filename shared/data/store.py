"""The datasets: what can be trained on, looked up by name, never by a client's path or key.

They live in a local folder (:class:`LocalDatasetFiles`) or an object store
(:class:`shared.storage.s3_datasets.S3DatasetFiles`); :class:`DatasetStore` holds the rules both
keep: only ``*.csv`` names of the listing exist, an upload is stored under a name the server
chooses and appears only once the loader accepted it, and a failed upload leaves nothing.
"""

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
from typing import Any, BinaryIO, Protocol

from shared.data.loader import DatasetSummary, validate_dataset
from shared.data.source import CsvSource
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


def is_dataset_name(name: str) -> bool:
    return bool(_NAME.match(name))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    #: The file, in a local folder; None in an object store.
    path: Path | None
    size_bytes: int
    modified_at: str
    #: The object's ETag, in an object store (what its validation is remembered by).
    etag: str | None = None


class DatasetFiles(Protocol):
    """Where the datasets' bytes live: each method is atomic on its medium."""

    def describe(self) -> str: ...

    def listing(self) -> list[DatasetInfo]:
        """What is there, with any names (:class:`DatasetStore` keeps the dataset names)."""
        ...

    def source(self, info: DatasetInfo) -> CsvSource: ...

    def checked_source(self, info: DatasetInfo, chunk_rows: int) -> CsvSource:
        """:meth:`source`, once the loader accepted the file (a
        :class:`~shared.errors.DataError` otherwise)."""
        ...

    def make_default(self, name: str, rows: int, seed: int) -> None:
        """Write the synthetic dataset ``name`` if it is not there: once, whoever calls."""
        ...

    def store_upload(
        self, source: BinaryIO | io.RawIOBase, filename: str | None, chunk_rows: int
    ) -> DatasetSummary:
        """Keep ``source`` under a fresh name (see :func:`upload_name`) only if the loader
        accepts it; otherwise leave nothing."""
        ...

    def cleanup(self, older_than_seconds: float) -> int: ...


class _Limited(io.RawIOBase):
    """An upload that stops with :class:`UploadTooLargeError` the moment it crosses the limit."""

    def __init__(self, source: BinaryIO | io.RawIOBase, max_bytes: int) -> None:
        super().__init__()
        self._source = source
        self._max_bytes = max_bytes
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(min(len(buffer), _COPY_CHUNK))
        if not data:
            return 0
        self._size += len(data)
        if self._size > self._max_bytes:
            raise UploadTooLargeError(
                f"the upload is larger than the limit of {self._max_bytes} bytes",
                details={"max_bytes": self._max_bytes},
            )
        n = len(data)
        buffer[:n] = data
        return n


class DatasetStore:
    """A flat set of ``*.csv`` datasets. Names come from the listing, so a name sent by a
    client is matched against it and never joined into a path or a key.

    ``DatasetStore(folder, ...)`` keeps them in a local folder; ``DatasetStore(files, ...)``
    in any :class:`DatasetFiles` (see :func:`shared.stores.dataset_store`)."""

    def __init__(self, root: Path | DatasetFiles, default_name: str, default_rows: int) -> None:
        self.files: DatasetFiles = LocalDatasetFiles(root) if isinstance(root, Path) else root
        self.default_name = default_name
        self.default_rows = default_rows

    @property
    def root(self) -> Path:
        """The folder of local datasets (tests and tools that look at the files)."""
        if not isinstance(self.files, LocalDatasetFiles):
            raise TypeError(f"the datasets at {self.files.describe()} have no local folder")
        return self.files.root

    def list(self) -> list[DatasetInfo]:
        return sorted(
            (info for info in self.files.listing() if _NAME.match(info.name)),
            key=lambda info: info.name,
        )

    def get(self, name: str) -> DatasetInfo:
        known = self.list()
        for info in known:
            if info.name == name:
                return info
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}",
            details={"field": "dataset", "allowed": [info.name for info in known]},
        )

    def ensure_default(self) -> DatasetInfo:
        """Make the synthetic default dataset on first use (once, even with several callers)."""
        self.files.make_default(self.default_name, self.default_rows, DEFAULT_SEED)
        return self.get(self.default_name)

    def source(self, info: DatasetInfo) -> CsvSource:
        """What the loader reads for ``info``: the file, or the object streamed from the store."""
        return self.files.source(info)

    def training_source(self, info: DatasetInfo, chunk_rows: int = 250_000) -> CsvSource:
        """:meth:`source` for a training. A dataset that another tool put into an object store
        is validated on its first use (the result is remembered per ETag); a local file is
        read by the training itself, under the same rules."""
        return self.files.checked_source(info, chunk_rows)

    def store_upload(
        self,
        source: BinaryIO | io.RawIOBase,
        filename: str | None,
        max_bytes: int,
        chunk_rows: int = 250_000,
    ) -> DatasetSummary:
        """Store an upload under a server-chosen name, only if it is a usable dataset;
        otherwise nothing is left behind. ``source`` is read in chunks; crossing ``max_bytes``
        stops the copy at once with :class:`UploadTooLargeError`. ``filename`` is only a hint
        for the name (see :func:`upload_name`); it is never used as a path or a key."""
        return self.files.store_upload(_Limited(source, max_bytes), filename, chunk_rows)

    def cleanup_partial_uploads(self, older_than_seconds: float = 3600) -> int:
        """Remove what uploads that a crashed process never finished left (an upload in
        progress keeps writing, so its leftovers are never that old)."""
        return self.files.cleanup(older_than_seconds)


class LocalDatasetFiles:
    """A flat folder of ``*.csv`` files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return str(self.root)

    def listing(self) -> list[DatasetInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.iterdir():
            if path.is_file() and _NAME.match(path.name):
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
                out.append(DatasetInfo(path.name, path, stat.st_size, modified))
        return out

    def source(self, info: DatasetInfo) -> Path:
        return self.root / info.name

    def checked_source(self, info: DatasetInfo, chunk_rows: int) -> Path:
        return self.source(info)

    def make_default(self, name: str, rows: int, seed: int) -> None:
        target = self.root / name
        if target.is_file():
            return
        with disk_full_means("the default dataset was not generated"):
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / ".default.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not target.is_file():
                    write_synthetic_csv(target, rows, seed=seed)

    def store_upload(
        self, source: BinaryIO | io.RawIOBase, filename: str | None, chunk_rows: int
    ) -> DatasetSummary:
        """The bytes go to a hidden temp file in the folder itself, so publishing is a link on
        the same filesystem (atomic, and never replaces an existing dataset), and readers never
        see a partial or unvalidated file. A full disk is a
        :class:`~shared.errors.StorageFullError`, the temp file removed."""
        with disk_full_means("the upload was not stored"):
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, suffix=".part", dir=self.root)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(_COPY_CHUNK):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                summary = validate_dataset(tmp, chunk_rows)
                name = self._publish(tmp, filename)
            finally:
                tmp.unlink(missing_ok=True)
        return replace(summary, name=name)

    def cleanup(self, older_than_seconds: float) -> int:
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
