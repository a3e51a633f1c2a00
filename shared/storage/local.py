"""The registry in a local folder: ``flock`` serialises writers, ``rename`` publishes.

Layout under the root folder::

    v1/model.joblib  v1/metadata.json     one folder per version, never modified once published
    production.json                       {"version": "v2", "history": ["v1"], "updated_at": ...}
    .lock                                 flock file serialising every writer
    .staging/<uuid>/                      writes in progress, invisible to readers
    .staging/production.json.tmp          the next alias, while it is written
    .deleted/v3                           an empty tombstone per deleted version: its number
                                          stays taken

- A version is written whole in ``.staging`` (artifact and metadata, both fsynced) and published
  by one ``rename`` of its folder, so a crash leaves either a complete version or none, and
  readers never take the lock: they list folders and read files that never change.
- ``production.json`` is written whole in ``.staging`` and replaced with ``os.replace``, so
  a reader sees the old alias or the new one, never a torn one, and serving processes can poll
  its ``stat`` (:meth:`LocalRegistryStorage.alias_token`) and reload only when it changed.
- A version is deleted under the lock (so no promotion can come between the check that it
  is not in the alias and its removal): its tombstone is written, then its folder is renamed
  into ``.staging`` (unlisted whole, at once) and removed from there.
- Whatever a crashed writer leaves is in ``.staging``, where :meth:`LocalRegistryStorage.cleanup`
  finds it; a full disk is a :class:`~shared.errors.StorageFullError`, and what was being
  written is removed again.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from shared.errors import IntegrityError, StorageFullError, disk_full_means
from shared.storage.base import AliasChange, AliasGuard, AliasToken, MakeMetadata

__all__ = ["ARTIFACT_NAME", "METADATA_NAME", "LocalRegistryStorage"]

log = logging.getLogger(__name__)

ARTIFACT_NAME = "model.joblib"
METADATA_NAME = "metadata.json"
PRODUCTION_NAME = "production.json"
LOCK_NAME = ".lock"
STAGING_NAME = ".staging"
DELETED_NAME = ".deleted"
_NUMBERED = re.compile(r"^v[1-9][0-9]*$")


def _fsync_dir(path: Path) -> None:
    """A rename is durable only once the directory holding it is synced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class LocalRegistryStorage:
    """A registry folder on a local (or shared, flock-capable) file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    @property
    def _lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def _staging_root(self) -> Path:
        return self.root / STAGING_NAME

    @property
    def _deleted_root(self) -> Path:
        return self.root / DELETED_NAME

    @property
    def _production_path(self) -> Path:
        return self.root / PRODUCTION_NAME

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes and threads; the kernel frees it if we die."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # -- versions -----------------------------------------------------------------------------

    def save(self, dump: Callable[[BinaryIO], None], make_metadata: MakeMetadata) -> str:
        """A crash at any point leaves the version whole or absent, and so does a full disk
        (:class:`StorageFullError`)."""
        staging = self._staging_root / uuid.uuid4().hex
        committed = False
        try:
            self._staging_root.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            artifact = staging / ARTIFACT_NAME
            # The slow part (dump, fsync, hash) runs outside the lock so writers overlap.
            with open(artifact, "wb") as f:
                dump(f)
                f.flush()
                os.fsync(f.fileno())
            size = artifact.stat().st_size
            sha256 = _sha256_file(artifact)
            with self._locked():
                # A cleanup that ran while we were dumping may have removed our staging folder.
                if not artifact.is_file() or artifact.stat().st_size != size:
                    raise IntegrityError(
                        "the staged artifact vanished before it was published (removed by a "
                        "staging cleanup?)"
                    )
                name = f"v{self._next_number()}"
                _write_synced(staging / METADATA_NAME, make_metadata(name, sha256, size))
                _fsync_dir(staging)
                os.rename(staging, self.root / name)  # the commit point
                committed = True
                _fsync_dir(self._staging_root)
                _fsync_dir(self.root)
                self._cleanup_quietly()
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if not committed and StorageFullError.caused(exc):
                raise StorageFullError.instead_of(exc, "the model version was not saved") from exc
            raise
        return name

    def _next_number(self) -> int:
        """Max + 1 over every v<digits> entry, complete or not, so a rename never collides, and
        over every tombstone, so a deleted version's number is never given again."""
        numbers = [0]
        for folder in (self.root, self._deleted_root):
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if _NUMBERED.match(entry.name):
                            numbers.append(int(entry.name[1:]))
            except FileNotFoundError:
                continue
        return max(numbers) + 1

    def version_names(self) -> list[str]:
        """Published versions, from the folder listing alone (cheap: no metadata is read)."""
        found: list[str] = []
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    # Real folders only: a symlink could point a version anywhere on disk.
                    if not _NUMBERED.match(entry.name) or not entry.is_dir(follow_symlinks=False):
                        continue
                    if (Path(entry.path) / METADATA_NAME).is_file():
                        found.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return found

    def version_path(self, name: str) -> Path:
        return self.root / name

    def read_metadata(self, name: str) -> bytes:
        return (self.root / name / METADATA_NAME).read_bytes()

    def read_artifact(self, name: str, sha256: str) -> bytes:
        return (self.root / name / ARTIFACT_NAME).read_bytes()

    def delete_version(self, name: str, guard: AliasGuard) -> bool:
        """Everything under the lock, which ``promote`` takes too (and looks the version up
        under): no promotion can come between ``guard``'s verdict and the unlisting, and one
        that comes after finds the version gone. The tombstone goes first, so a crash at any
        point leaves the number taken; the rename into staging is the commit point, and what a
        crash leaves in staging is removed by :meth:`cleanup`."""
        with disk_full_means(f"version {name} was not deleted"), self._locked():
            if name not in self.version_names():  # matched against the listing, never joined
                return False
            guard(self.read_alias())
            self._deleted_root.mkdir(exist_ok=True)
            _write_synced(self._deleted_root / name, b"")
            _fsync_dir(self._deleted_root)
            self._staging_root.mkdir(exist_ok=True)
            trash = self._staging_root / f"deleted-{name}-{uuid.uuid4().hex}"
            os.rename(self.root / name, trash)  # the commit point
            _fsync_dir(self.root)
            shutil.rmtree(trash, ignore_errors=True)  # a leftover is a staging leftover
        return True

    # -- the alias ----------------------------------------------------------------------------

    def read_alias(self) -> bytes | None:
        try:
            return self._production_path.read_bytes()
        except FileNotFoundError:
            return None

    def update_alias(self, change: AliasChange) -> None:
        with disk_full_means("the production alias was not changed"), self._locked():
            document = change(self.read_alias())
            if document is not None:
                self._write_production(document)

    def _write_production(self, document: bytes) -> None:
        """Replace production.json atomically; callers hold the lock.

        The new alias is written in staging, so that what a crash leaves is a staging leftover
        (only ever written under the lock, so one name is enough)."""
        previous = self.alias_token()
        self._staging_root.mkdir(parents=True, exist_ok=True)
        tmp = self._staging_root / f"{PRODUCTION_NAME}.tmp"
        try:
            _write_synced(tmp, document)
            # The freed inode of the old file can be reused and two writes can share a clock
            # tick, so force a strictly later mtime: the token then changes on every write.
            mtime_ns = time.time_ns()
            if previous is not None and mtime_ns <= previous[1]:
                mtime_ns = previous[1] + 1
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
            os.replace(tmp, self._production_path)  # the commit point
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)

    def alias_token(self) -> AliasToken | None:
        """A stat-only fingerprint of the alias, so servers can poll it and reload on change."""
        try:
            st = os.stat(self._production_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    # -- housekeeping -------------------------------------------------------------------------

    def cleanup(self, older_than_seconds: float) -> int:
        """Remove what crashed writers left in staging; a live writer keeps touching its files."""
        if not self._staging_root.is_dir():
            return 0
        with self._locked():
            return self._cleanup_locked(older_than_seconds)

    def _cleanup_quietly(self) -> None:
        """Housekeeping piggybacks on saves; it must never fail a save that already committed."""
        try:
            self._cleanup_locked(3600)
        except Exception:
            log.warning("staging cleanup failed", exc_info=True)

    def _cleanup_locked(self, older_than_seconds: float) -> int:
        # Under the lock, so a writer never publishes a folder while it is being deleted.
        cutoff = time.time() - older_than_seconds
        removed = 0
        try:
            entries = list(os.scandir(self._staging_root))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if _newest_mtime(Path(entry.path)) > cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not remove staging leftover %s: %s", entry.path, exc)
                continue
            removed += 1
        if removed:
            log.info("removed %d stale staging folder(s)", removed)
        return removed


def _newest_mtime(path: Path) -> float:
    """A writer's dump keeps bumping its artifact's mtime, not its folder's."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                except FileNotFoundError:
                    continue
    return newest
