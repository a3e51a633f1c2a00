"""The versioned model registry: immutable numbered versions plus one production alias.

Layout under the root folder::

    v1/model.joblib  v1/metadata.json     one folder per version, never modified once published
    production.json                       {"version": "v2", "history": ["v1"], "updated_at": ...}
    .lock                                 flock file serialising every writer
    .staging/<uuid>/                      writes in progress, invisible to readers
    .staging/production.json.tmp          the next alias, while it is written

Why it is shaped this way:

- A version is written whole in ``.staging`` (artifact and metadata, both fsynced) and published
  by one ``rename`` of its folder, so a crash leaves either a complete version or none, and
  readers never take the lock: they list folders and read files that never change.
- ``production.json`` is written whole in ``.staging`` and replaced with ``os.replace``, so
  a reader sees the old alias or the new one, never a torn one, and serving processes can poll
  its ``stat`` (:meth:`ModelRegistry.alias_token`) and reload only when it changed.
- Whatever a crashed writer leaves is in ``.staging``, where :meth:`ModelRegistry.cleanup_staging`
  finds it; a full disk is a :class:`~shared.errors.StorageFullError`, and what was being
  written is removed again.
- A version name from a client is only ever matched against the folder listing, never joined
  into a path, and an artifact is hashed and compared with its metadata before it is unpickled,
  because unpickling runs code.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import io
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from shared.errors import (
    ConflictError,
    GateFailedError,
    IntegrityError,
    StorageFullError,
    VersionNotFoundError,
    disk_full_means,
)

__all__ = [
    "ARTIFACT_NAME",
    "METADATA_NAME",
    "VERSION_PATTERN",
    "ModelRegistry",
    "ModelVersion",
    "ProductionState",
]

log = logging.getLogger(__name__)

ARTIFACT_NAME = "model.joblib"
METADATA_NAME = "metadata.json"
PRODUCTION_NAME = "production.json"
LOCK_NAME = ".lock"
STAGING_NAME = ".staging"
#: How many previous production versions ``rollback`` can walk back through.
HISTORY_LIMIT = 50

# Canonical names only: no leading zeros, so "v01" can never alias "v1"; ASCII digits only.
#: A version name (the API documents it as the pattern of its version parameters).
VERSION_PATTERN = r"^v[1-9][0-9]*$"
_VERSION_RE = re.compile(VERSION_PATTERN)
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ModelVersion:
    version: str
    number: int
    path: Path
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ProductionState:
    version: str | None
    history: list[str]
    updated_at: str | None


def _version_number(name: str) -> int | None:
    return int(name[1:]) if _VERSION_RE.match(name) else None


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


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _metadata_json(metadata: dict[str, Any]) -> str:
    # Strict JSON (no NaN/Infinity) so every consumer, the API's responses included, can read it.
    return json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"


class ModelRegistry:
    """A folder of immutable model versions and the alias that says which one serves."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------------

    @property
    def _lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def _staging_root(self) -> Path:
        return self.root / STAGING_NAME

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

    # -- writing a version --------------------------------------------------------------------

    def save_version(self, model: Any, metadata: dict[str, Any]) -> ModelVersion:
        """Publish ``model`` as the next version; a crash at any point leaves it whole or absent,
        and so does a full disk (:class:`StorageFullError`)."""
        # Fail on unserialisable metadata before spending time on the dump.
        _metadata_json(metadata)
        staging = self._staging_root / uuid.uuid4().hex
        committed = False
        try:
            self._staging_root.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            artifact = staging / ARTIFACT_NAME
            # The slow part (dump, fsync, hash) runs outside the lock so writers overlap.
            with open(artifact, "wb") as f:
                joblib.dump(model, f)
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
                number = self._next_number()
                name = f"v{number}"
                document = {
                    **metadata,
                    "version": name,
                    "created_at": _now_iso(),
                    "artifact_sha256": sha256,
                    "artifact_bytes": size,
                }
                text = _metadata_json(document)
                _write_synced(staging / METADATA_NAME, text.encode("utf-8"))
                _fsync_dir(staging)
                final = self.root / name
                os.rename(staging, final)  # the commit point
                committed = True
                _fsync_dir(self._staging_root)
                _fsync_dir(self.root)
                self._cleanup_quietly()
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if not committed and StorageFullError.caused(exc):
                raise StorageFullError.instead_of(exc, "the model version was not saved") from exc
            raise
        log.info("saved model version %s (%d bytes)", name, size)
        return ModelVersion(name, number, final, json.loads(text))

    def _next_number(self) -> int:
        """Max + 1 over every v<digits> entry, complete or not, so a rename never collides."""
        numbers = [0]
        with os.scandir(self.root) as entries:
            for entry in entries:
                number = _version_number(entry.name)
                if number is not None:
                    numbers.append(number)
        return max(numbers) + 1

    # -- reading versions ---------------------------------------------------------------------

    def _entries(self) -> list[tuple[int, str, Path]]:
        """Published versions, from the folder listing alone (cheap: no metadata is read)."""
        found: list[tuple[int, str, Path]] = []
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    number = _version_number(entry.name)
                    # Real folders only: a symlink could point a version anywhere on disk.
                    if number is None or not entry.is_dir(follow_symlinks=False):
                        continue
                    path = Path(entry.path)
                    if (path / METADATA_NAME).is_file():
                        found.append((number, entry.name, path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found.sort()
        return found

    @staticmethod
    def _read_metadata(name: str, path: Path) -> dict[str, Any]:
        try:
            data = json.loads((path / METADATA_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"metadata of version {name} is unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise IntegrityError(f"metadata of version {name} is not a JSON object")
        return data

    def list_versions(self) -> list[ModelVersion]:
        """Every published version, oldest first; one with unreadable metadata is skipped."""
        versions: list[ModelVersion] = []
        for number, name, path in self._entries():
            try:
                metadata = self._read_metadata(name, path)
            except IntegrityError as exc:
                log.warning("skipping version %s: %s", name, exc.message)
                continue
            versions.append(ModelVersion(name, number, path, metadata))
        return versions

    def get(self, version: str) -> ModelVersion:
        """Match the client's string against the listing; it is never used as a path."""
        for number, name, path in self._entries():
            if name == version:
                return ModelVersion(name, number, path, self._read_metadata(name, path))
        raise VersionNotFoundError(f"model version {version!r} not found", {"version": version})

    def load(self, version: str) -> Any:
        """The fitted pipeline of ``version``. Unpickles only bytes whose sha256 matches the
        metadata: unpickling runs code."""
        info = self.get(version)
        expected = info.metadata.get("artifact_sha256")
        if not isinstance(expected, str):
            raise IntegrityError(f"version {info.version} has no artifact checksum in its metadata")
        try:
            # Hash and unpickle the very same bytes, so nothing can change between check and use.
            data = (info.path / ARTIFACT_NAME).read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"artifact of version {info.version} is unreadable: {exc}"
            ) from exc
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, expected):
            raise IntegrityError(
                f"artifact of version {info.version} does not match its checksum; refusing to load",
                {"version": info.version, "expected_sha256": expected, "actual_sha256": actual},
            )
        return joblib.load(io.BytesIO(data))

    # -- production alias ---------------------------------------------------------------------

    def production(self) -> ProductionState:
        try:
            text = self._production_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ProductionState(None, [], None)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise IntegrityError(f"{PRODUCTION_NAME} is unreadable: {exc}") from exc
        version = data.get("version") if isinstance(data, dict) else None
        history = data.get("history", []) if isinstance(data, dict) else None
        updated_at = data.get("updated_at") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or not (version is None or isinstance(version, str))
            or not isinstance(history, list)
            or not all(isinstance(item, str) for item in history)
            or not (updated_at is None or isinstance(updated_at, str))
        ):
            raise IntegrityError(f"{PRODUCTION_NAME} does not have the expected shape")
        return ProductionState(version, list(history), updated_at)

    def production_version(self) -> str | None:
        return self.production().version

    def promote(self, version: str, force: bool = False) -> ProductionState:
        """Point production at ``version``; a version that failed its quality gate needs force."""
        with disk_full_means("the production alias was not changed"), self._locked():
            info = self.get(version)
            state = self.production()
            if state.version == info.version:
                return state
            gate = info.metadata.get("gate")
            if isinstance(gate, dict) and gate.get("passed") is False and not force:
                raise GateFailedError(
                    f"version {info.version} failed the quality gate; promote it with force "
                    "to override",
                    {"version": info.version, "gate": gate},
                )
            history = list(state.history)
            if state.version is not None:
                history.append(state.version)
            new_state = self._write_production(info.version, history)
        log.info("promoted %s to production (was %s)", info.version, state.version)
        return new_state

    def rollback(self) -> ProductionState:
        """Go back to the previous production version; the current one is dropped, not stacked."""
        with disk_full_means("the production alias was not changed"), self._locked():
            state = self.production()
            if not state.history:
                raise ConflictError("nothing to roll back to")
            history = list(state.history)
            previous = self.get(history.pop()).version  # refuse to point at a vanished version
            new_state = self._write_production(previous, history)
        log.info("rolled production back from %s to %s", state.version, previous)
        return new_state

    def _write_production(self, version: str, history: list[str]) -> ProductionState:
        """Replace production.json atomically; callers hold the lock.

        The new alias is written in staging, so that what a crash leaves is a staging leftover
        (only ever written under the lock, so one name is enough)."""
        state = ProductionState(version, history[-HISTORY_LIMIT:], _now_iso())
        document = {
            "version": state.version,
            "history": state.history,
            "updated_at": state.updated_at,
        }
        previous = self.alias_token()
        self._staging_root.mkdir(parents=True, exist_ok=True)
        tmp = self._staging_root / f"{PRODUCTION_NAME}.tmp"
        try:
            _write_synced(tmp, _metadata_json(document).encode("utf-8"))
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
        return state

    def alias_token(self) -> tuple[int, int, int] | None:
        """A stat-only fingerprint of the alias, so servers can poll it and reload on change."""
        try:
            st = os.stat(self._production_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    # -- housekeeping -------------------------------------------------------------------------

    def cleanup_staging(self, older_than_seconds: float = 3600) -> int:
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
