"""The versioned model registry: immutable numbered versions plus one production alias.

The rules live here; the bytes live in a :class:`~shared.storage.base.RegistryStorage`: a local
folder (:mod:`shared.storage.local`, ``flock`` and ``rename``) or an S3-compatible object store
(:mod:`shared.storage.s3_registry`, conditional writes). Either way:

- versions are immutable and numbered in order, and two writers never get the same number;
- a version is listed only once complete (its metadata, which carries the artifact's sha256, is
  published after the artifact), so a reader never sees a half-written one;
- the alias (``{"version", "history", "updated_at"}``) changes atomically, by one writer at a
  time or by compare-and-set, so no promotion is silently lost;
- a version is deleted only when it is neither production nor in the rollback history, checked
  so that no concurrent promotion can slip between the check and the unlisting, and its
  number is never given again (:meth:`ModelRegistry.delete`);
- a version name from a client is only ever matched against the listing, never turned into a
  path or a key, and an artifact is hashed and compared with its metadata before it is
  unpickled, because unpickling runs code.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import joblib

from shared.errors import (
    ConflictError,
    GateFailedError,
    IntegrityError,
    VersionInUseError,
    VersionNotFoundError,
)
from shared.storage.base import AliasToken, RegistryStorage
from shared.storage.local import ARTIFACT_NAME, METADATA_NAME, LocalRegistryStorage

__all__ = [
    "ARTIFACT_NAME",
    "METADATA_NAME",
    "VERSION_PATTERN",
    "ModelRegistry",
    "ModelVersion",
    "ProductionState",
    "VersionPage",
]

log = logging.getLogger(__name__)

#: How many previous production versions ``rollback`` can walk back through.
HISTORY_LIMIT = 50

# Canonical names only: no leading zeros, so "v01" can never alias "v1"; ASCII digits only.
#: A version name (the API documents it as the pattern of its version parameters).
VERSION_PATTERN = r"^v[1-9][0-9]*$"
_VERSION_RE = re.compile(VERSION_PATTERN)


@dataclass(frozen=True)
class ModelVersion:
    version: str
    number: int
    #: The version's folder on a local registry; None in an object store.
    path: Path | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ProductionState:
    version: str | None
    history: list[str]
    updated_at: str | None


@dataclass(frozen=True)
class VersionPage:
    """One page of the listing, newest first."""

    versions: list[ModelVersion]
    #: Every listed version, on any page.
    total: int
    #: Where the next page starts below (the last version of this one), None on the last page.
    next_before: str | None


def _version_number(name: str) -> int | None:
    return int(name[1:]) if _VERSION_RE.match(name) else None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _metadata_json(metadata: dict[str, Any]) -> str:
    # Strict JSON (no NaN/Infinity) so every consumer, the API's responses included, can read it.
    return json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _parse_alias(document: bytes | None) -> ProductionState:
    if document is None:
        return ProductionState(None, [], None)
    try:
        data = json.loads(document)
    except ValueError as exc:
        raise IntegrityError(f"the production alias is unreadable: {exc}") from exc
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
        raise IntegrityError("the production alias does not have the expected shape")
    return ProductionState(version, list(history), updated_at)


def _alias_document(state: ProductionState, **extra: str) -> bytes:
    document = {
        **extra,
        "version": state.version,
        "history": state.history,
        "updated_at": state.updated_at,
    }
    return _metadata_json(document).encode("utf-8")


def _refuse_if_in_use(name: str, state: ProductionState) -> None:
    """A version that serves, or that a rollback could bring back, stays."""
    if state.version == name:
        raise VersionInUseError(
            f"{name} is the production version; promote another first",
            {"version": name, "reason": "production"},
        )
    if name in state.history:
        # 1: the version the next rollback brings back
        position = len(state.history) - max(i for i, v in enumerate(state.history) if v == name)
        raise VersionInUseError(
            f"{name} is in the rollback history (position {position}); roll back past it or "
            "promote another first",
            {"version": name, "reason": "rollback_history", "position": position},
        )


class ModelRegistry:
    """Immutable model versions and the alias that says which one serves.

    ``ModelRegistry(folder)`` keeps them in a local folder; ``ModelRegistry(storage)`` in any
    :class:`~shared.storage.base.RegistryStorage` (see :func:`shared.stores.model_registry`).
    """

    def __init__(self, storage: Path | RegistryStorage) -> None:
        self.storage: RegistryStorage = (
            LocalRegistryStorage(storage) if isinstance(storage, Path) else storage
        )

    @property
    def root(self) -> Path:
        """The folder of a local registry (tests and tools that look at the files)."""
        if not isinstance(self.storage, LocalRegistryStorage):
            raise TypeError(f"the registry at {self.storage.describe()} has no local folder")
        return self.storage.root

    # -- writing a version --------------------------------------------------------------------

    def save_version(self, model: Any, metadata: dict[str, Any]) -> ModelVersion:
        """Publish ``model`` as the next version; a crash at any point leaves it whole or
        absent (a full disk: :class:`~shared.errors.StorageFullError`)."""
        # Fail on unserialisable metadata before spending time on the dump.
        _metadata_json(metadata)
        texts: dict[str, str] = {}

        def dump(out: BinaryIO) -> None:
            joblib.dump(model, out)

        def make_metadata(name: str, sha256: str, size: int) -> bytes:
            document = {
                **metadata,
                "version": name,
                "created_at": _now_iso(),
                "artifact_sha256": sha256,
                "artifact_bytes": size,
            }
            texts[name] = _metadata_json(document)
            return texts[name].encode("utf-8")

        name = self.storage.save(dump, make_metadata)
        document = json.loads(texts[name])
        log.info("saved model version %s (%d bytes)", name, document["artifact_bytes"])
        number = _version_number(name)
        assert number is not None, name
        return ModelVersion(name, number, self.storage.version_path(name), document)

    # -- reading versions ---------------------------------------------------------------------

    def _entries(self) -> list[tuple[int, str]]:
        """Published versions, from the listing alone (cheap: no metadata is read)."""
        found = []
        for name in self.storage.version_names():
            number = _version_number(name)
            if number is not None:
                found.append((number, name))
        found.sort()
        return found

    def _read_metadata(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads(self.storage.read_metadata(name))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"metadata of version {name} is unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise IntegrityError(f"metadata of version {name} is not a JSON object")
        return data

    def _version(self, number: int, name: str) -> ModelVersion:
        return ModelVersion(
            name, number, self.storage.version_path(name), self._read_metadata(name)
        )

    def list_versions(self) -> list[ModelVersion]:
        """Every published version, oldest first; one with unreadable metadata is skipped."""
        versions: list[ModelVersion] = []
        for number, name in self._entries():
            try:
                versions.append(self._version(number, name))
            except IntegrityError as exc:
                log.warning("skipping version %s: %s", name, exc.message)
        return versions

    def page(self, limit: int, before: str | None = None) -> VersionPage:
        """Up to ``limit`` versions numbered below ``before`` (a version name, listed or not:
        only its number is used), newest first. Only the page's metadata is read."""
        entries = self._entries()
        bound = _version_number(before) if before is not None else None
        if before is not None and bound is None:
            raise ValueError(f"not a version name: {before!r}")
        below = [(n, name) for n, name in reversed(entries) if bound is None or n < bound]
        versions: list[ModelVersion] = []
        for number, name in below[:limit]:
            try:
                versions.append(self._version(number, name))
            except (IntegrityError, VersionNotFoundError) as exc:  # unreadable, or just deleted
                log.warning("skipping version %s: %s", name, exc.message)
        more = len(below) > limit
        return VersionPage(versions, len(entries), below[limit - 1][1] if more else None)

    def _listed(self, version: str) -> tuple[int, str]:
        for number, name in self._entries():
            if name == version:
                return number, name
        raise VersionNotFoundError(f"model version {version!r} not found", {"version": version})

    def get(self, version: str) -> ModelVersion:
        """Match the client's string against the listing; it is never used as a path or key."""
        number, name = self._listed(version)
        try:
            return self._version(number, name)
        except IntegrityError:
            if version not in self.storage.version_names():  # deleted since it was listed
                raise VersionNotFoundError(
                    f"model version {version!r} not found", {"version": version}
                ) from None
            raise

    def load(self, version: str) -> Any:
        """The fitted pipeline of ``version``. Unpickles only bytes whose sha256 matches the
        metadata: unpickling runs code."""
        info = self.get(version)
        expected = info.metadata.get("artifact_sha256")
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise IntegrityError(f"version {info.version} has no artifact checksum in its metadata")
        try:
            # Hash and unpickle the very same bytes, so nothing can change between check and use.
            data = self.storage.read_artifact(info.version, expected)
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
        return _parse_alias(self.storage.read_alias())

    def production_version(self) -> str | None:
        return self.production().version

    def promote(self, version: str, force: bool = False) -> ProductionState:
        """Point production at ``version``; a version that failed its quality gate needs force."""
        outcome: list[ProductionState] = []

        def change(document: bytes | None) -> bytes | None:
            outcome.clear()
            info = self.get(version)
            state = _parse_alias(document)
            if state.version == info.version:
                outcome.extend([state, state])
                return None
            gate = info.metadata.get("gate")
            if isinstance(gate, dict) and gate.get("passed") is False and not force:
                raise GateFailedError(
                    f"version {info.version} failed the quality gate; promote it with force "
                    "to override",
                    {"version": info.version, "gate": gate},
                )
            history = [*state.history, state.version] if state.version else list(state.history)
            new_state = ProductionState(info.version, history[-HISTORY_LIMIT:], _now_iso())
            outcome.extend([state, new_state])
            return _alias_document(new_state)

        self.storage.update_alias(change)
        old, new = outcome
        if old != new:
            log.info("promoted %s to production (was %s)", new.version, old.version)
        return new

    def rollback(self) -> ProductionState:
        """Go back to the previous production version; the current one is dropped, not stacked."""
        outcome: list[ProductionState] = []

        def change(document: bytes | None) -> bytes | None:
            outcome.clear()
            state = _parse_alias(document)
            if not state.history:
                raise ConflictError("nothing to roll back to")
            history = list(state.history)
            previous = self.get(history.pop()).version  # refuse to point at a vanished version
            new_state = ProductionState(previous, history[-HISTORY_LIMIT:], _now_iso())
            outcome.extend([state, new_state])
            return _alias_document(new_state)

        self.storage.update_alias(change)
        old, new = outcome
        log.info("rolled production back from %s to %s", old.version, new.version)
        return new

    def alias_token(self) -> AliasToken | None:
        """A cheap fingerprint of the alias (a stat, or a HEAD request) that changes whenever
        the alias does, so servers can poll it and reload only on change."""
        return self.storage.alias_token()

    # -- deleting versions ----------------------------------------------------------------------

    def delete(self, version: str) -> None:
        """Delete ``version`` (matched against the listing): refused with
        :class:`~shared.errors.VersionInUseError` while it is production or in the rollback
        history. The storage checks the alias so that a concurrent promotion of the version
        either comes first (and the deletion is refused) or finds it gone (404); see
        :meth:`~shared.storage.base.RegistryStorage.delete_version`."""
        _, name = self._listed(version)
        _refuse_if_in_use(name, self.production())  # the usual answer, before any write

        def guard(document: bytes | None) -> bytes:
            state = _parse_alias(document)
            _refuse_if_in_use(name, state)
            # Same state, other bytes: a compare-and-set made on the old alias must fail.
            return _alias_document(state, checked_for_deletion=name)

        if not self.storage.delete_version(name, guard):
            raise VersionNotFoundError(f"model version {version!r} not found", {"version": name})
        log.info("deleted model version %s", name)

    def apply_retention(self, keep: int) -> list[str]:
        """Keep the newest ``keep`` versions besides production and the rollback history;
        delete the others, oldest first. ``keep`` 0 (or less): keep everything. The versions
        deleted; one that a concurrent promotion or deletion took first is skipped."""
        if keep <= 0:
            return []
        state = self.production()
        protected = {state.version, *state.history}
        others = [name for _, name in reversed(self._entries()) if name not in protected]
        deleted = []
        for name in reversed(others[keep:]):
            try:
                self.delete(name)
            except (VersionInUseError, VersionNotFoundError) as exc:
                log.info("retention keeps %s: %s", name, exc.message)
                continue
            deleted.append(name)
        if deleted:
            log.info(
                "retention (newest %d besides production and history) deleted %s",
                keep,
                ", ".join(deleted),
            )
        return deleted

    # -- housekeeping -------------------------------------------------------------------------

    def cleanup_staging(self, older_than_seconds: float = 3600) -> int:
        """Remove what crashed writers left behind; a live writer's files are never that old."""
        return self.storage.cleanup(older_than_seconds)
