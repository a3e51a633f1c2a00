"""The datasets in an S3-compatible object store.

Layout under the prefix::

    cases.csv                 a dataset: any top-level object with a dataset name
    _uploads/<uuid>.csv       an upload being validated (hidden: not a top-level name)
    _checks/cases.csv.json    what validating cases.csv found, for the ETag it had

- **Uploads** stream into ``_uploads/`` (multipart, one part in memory), are validated by
  streaming them back through the loader, and only then are copied to their name with
  ``If-None-Match: *`` (a name another upload took is never overwritten: a new one is drawn).
  The staging object is deleted whatever happens; a process that dies mid-upload leaves it (or
  an unfinished multipart upload) to :meth:`S3DatasetFiles.cleanup`.
- **Any other tool** may put a CSV there (``aws s3 cp``): it is listed at once, and validated
  on its first training; the result is kept in ``_checks/`` with the ETag it is true for, so a
  replaced object is validated again and a refused one fails the next training at once.
- **Training** streams the object (:class:`ObjectCsv`): memory stays one buffer, and a read
  pinned to the listed ETag never mixes two versions of a file.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO

from shared.data.loader import DatasetSummary, validate_dataset
from shared.data.store import DatasetInfo, is_dataset_name, upload_name
from shared.data.synthetic import synthetic_csv_chunks
from shared.errors import DataError, StorageUnavailableError
from shared.storage.s3 import ObjectInfo, ObjectStore, PreconditionFailed

__all__ = ["ObjectCsv", "S3DatasetFiles"]

log = logging.getLogger(__name__)

UPLOADS = "_uploads/"  # not ".uploads/": SeaweedFS keeps its multipart parts there
CHECKS = "_checks/"


class ObjectCsv:
    """A dataset object as the loader reads it (see :class:`shared.data.source.StoredCsv`)."""

    def __init__(self, objects: ObjectStore, info: ObjectInfo) -> None:
        self.objects = objects
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def size_bytes(self) -> int:
        return self.info.size

    def open_binary(self) -> IO[bytes]:
        return self.objects.open(self.info)


class _Chunks(io.RawIOBase):
    """An iterator of byte strings as a binary file (what an upload reads)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _object_info(info: DatasetInfo) -> ObjectInfo:
    assert info.etag is not None, info
    return ObjectInfo(
        info.name, info.size_bytes, info.etag, datetime.fromisoformat(info.modified_at)
    )


class S3DatasetFiles:
    """The datasets under one ``s3://BUCKET/PREFIX``."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def describe(self) -> str:
        return str(self.objects)

    def listing(self) -> list[DatasetInfo]:
        return [
            DatasetInfo(
                info.name, None, info.size, info.modified.astimezone(UTC).isoformat(), info.etag
            )
            for info in self.objects.list(recursive=False)
        ]

    def source(self, info: DatasetInfo) -> ObjectCsv:
        return ObjectCsv(self.objects, _object_info(info))

    # -- validation, remembered --------------------------------------------------------------

    def checked_source(self, info: DatasetInfo, chunk_rows: int) -> ObjectCsv:
        source = self.source(info)
        known = self._recall(info)
        if known is None:
            try:
                summary = validate_dataset(source, chunk_rows)
            except DataError as exc:
                self._remember(info.name, source.info.etag, {"valid": False, "error": exc.message})
                raise
            self._remember(info.name, source.info.etag, {"valid": True, **asdict(summary)})
        elif not known.get("valid"):
            raise DataError(str(known.get("error") or "the dataset was refused by the loader"))
        return source

    def _recall(self, info: DatasetInfo) -> dict[str, Any] | None:
        try:
            data, _ = self.objects.get(f"{CHECKS}{info.name}.json")
            check = json.loads(data)
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("unreadable validation record of %s; validating again", info.name)
            return None
        if not isinstance(check, dict) or check.get("etag") != info.etag:
            return None  # replaced since it was validated
        return check

    def _remember(self, name: str, etag: str, check: dict[str, Any]) -> None:
        """Best effort: without the record, the next training validates again."""
        record = json.dumps({**check, "etag": etag, "name": name}).encode()
        try:
            self.objects.put(f"{CHECKS}{name}.json", record)
        except StorageUnavailableError:
            log.warning("could not record the validation of %s", name, exc_info=True)

    # -- writing -----------------------------------------------------------------------------

    def make_default(self, name: str, rows: int, seed: int) -> None:
        """Streamed into the store as it is generated. Several hosts making it at once make
        the same bytes; the first to finish keeps its object (``If-None-Match: *``)."""
        if self.objects.head(name) is not None:
            return
        chunks = _Chunks(synthetic_csv_chunks(rows, seed))
        try:
            stored = self.objects.upload(name, chunks, if_absent=True)
        except PreconditionFailed:
            return
        self._remember(name, stored.etag, {"valid": True, "synthetic": {"rows": rows}})

    def store_upload(
        self, source: BinaryIO | io.RawIOBase, filename: str | None, chunk_rows: int
    ) -> DatasetSummary:
        staging = f"{UPLOADS}{uuid.uuid4().hex}.csv"
        try:
            staged = self.objects.upload(staging, source)
            summary = validate_dataset(ObjectCsv(self.objects, staged), chunk_rows)
            while True:
                name = upload_name(filename)
                try:
                    etag = self.objects.copy_new(staged, name)
                except PreconditionFailed:  # a 32-bit suffix collided: draw another
                    continue
                break
        finally:
            self._delete_quietly(staging)
        summary = replace(summary, name=name)
        self._remember(name, etag, {"valid": True, **asdict(summary)})
        return summary

    def _delete_quietly(self, name: str) -> None:
        try:
            self.objects.delete(name)
        except StorageUnavailableError:
            log.warning("could not delete %s (a later cleanup will)", name, exc_info=True)

    def cleanup(self, older_than_seconds: float) -> int:
        """Staged uploads and unfinished multipart uploads older than the cutoff, and the
        validation records of datasets that are gone. Housekeeping: a store that cannot be
        reached is a warning (the next cleanup catches up), not a failure of what called it."""
        try:
            return self._cleanup(older_than_seconds)
        except StorageUnavailableError as exc:
            log.warning("dataset cleanup skipped: %s", exc.message)
            return 0

    def _cleanup(self, older_than_seconds: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        removed = 0
        for info in self.objects.list(UPLOADS):
            if info.modified < cutoff:
                self.objects.delete(info.name)
                removed += 1
        names = {info.name for info in self.objects.list(recursive=False)}
        for info in self.objects.list(CHECKS):
            dataset = info.name[len(CHECKS) : -len(".json")]
            if is_dataset_name(dataset) and dataset not in names and info.modified < cutoff:
                self.objects.delete(info.name)
        return removed + self.objects.abort_stale_uploads("", cutoff)
