"""The registry in an S3-compatible object store: conditional writes instead of locks.

Layout under the prefix::

    versions/v1.json            a version's metadata: its commit marker, written last
    artifacts/<sha256>.joblib   the artifact, written first, named by its content
    production.json             the alias {"version", "history", "updated_at"}
    deleted/v3.json             a deleted version's tombstone (its metadata): the number stays
                                taken, and a deletion cut short can be undone

- **Numbers.** A writer stores the artifact, lists ``versions/`` and creates
  ``versions/v<max+1>.json`` with ``If-None-Match: *``. Of two writers on two hosts that picked
  the same number, the store lets one create it; the other gets ``412 Precondition Failed``,
  lists again and takes the next number. Nothing is ever overwritten.
- **Whole or absent.** A version exists only once its metadata does, and the metadata, which
  carries the artifact's sha256, is written after the artifact. A writer that dies in between
  leaves an artifact no version names: :meth:`S3RegistryStorage.cleanup` removes such orphans
  once they are an hour old (a live writer commits within seconds of its upload).
- **The alias** is replaced with ``If-Match`` on the ETag it was read with (``If-None-Match: *``
  for the first one), so a promotion that raced another is recomputed from the state the other
  left, never written over it; after :data:`ALIAS_ATTEMPTS` lost races it is a 409.
- **Deleting** (:meth:`S3RegistryStorage.delete_version`) writes the tombstone, unlists the
  version (deletes its metadata), then rewrites the alias with ``If-Match`` after checking
  again that the version is not in it. A promotion reads the alias, looks the version up, and
  writes the alias with ``If-Match``: whichever of the two writes second loses its
  compare-and-set and recomputes. A promotion that recomputes finds the version unlisted (404);
  a deletion that recomputes finds it promoted, puts its metadata back from the tombstone and
  answers 409. (Checking the alias only before unlisting, or re-reading it after, would not do:
  a promotion that looked the version up before the unlisting could still write the alias
  after the check.) The artifact is removed last, if no listed version has the same bytes.
- **Artifacts** are named by their sha256, so the key is derived from the checked metadata,
  never from a client, and the checksum is verified before unpickling as on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from shared.errors import ConflictError
from shared.storage.base import AliasChange, AliasGuard, AliasToken, MakeMetadata
from shared.storage.s3 import ObjectInfo, ObjectStore, PreconditionFailed

__all__ = ["ALIAS_ATTEMPTS", "S3RegistryStorage"]

log = logging.getLogger(__name__)

VERSIONS = "versions/"
ARTIFACTS = "artifacts/"
DELETED = "deleted/"
ALIAS = "production.json"
#: Lost compare-and-set races a promotion retries before it reports a conflict.
ALIAS_ATTEMPTS = 20
#: Numbers a save tries before it gives up (each failure means another version was published).
SAVE_ATTEMPTS = 100
_VERSION_KEY = re.compile(r"^versions/(v[1-9][0-9]*)\.json$")
_DELETED_KEY = re.compile(r"^deleted/(v[1-9][0-9]*)\.json$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _artifact(sha256: str) -> str:
    if not _SHA256.match(sha256):  # the key is built from metadata: check it is only a hash
        raise OSError(f"not a sha256: {sha256!r}")
    return f"{ARTIFACTS}{sha256}.joblib"


def _number(name: str) -> int:
    return int(name[1:])


def _alias_names(document: bytes | None) -> set[str]:
    """The versions an alias document names (production and history); unreadable: none."""
    try:
        data = json.loads(document) if document is not None else {}
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    history = data.get("history")
    named = [data.get("version"), *(history if isinstance(history, list) else [])]
    return {name for name in named if isinstance(name, str)}


class S3RegistryStorage:
    """A registry under one ``s3://BUCKET/PREFIX``."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        #: sha256 of each version's artifact, as read (versions never change, so it never goes
        #: stale): cleanups after the first read only the metadata of new versions.
        self._artifact_of: dict[str, str] = {}

    def describe(self) -> str:
        return str(self.objects)

    # -- versions -----------------------------------------------------------------------------

    def version_names(self) -> list[str]:
        names = []
        for info in self.objects.list(VERSIONS):
            match = _VERSION_KEY.match(info.name)
            if match:
                names.append(match.group(1))
        return names

    def version_path(self, name: str) -> Path | None:
        return None

    def read_metadata(self, name: str) -> bytes:
        return self.objects.get(f"{VERSIONS}{name}.json")[0]

    def read_artifact(self, name: str, sha256: str) -> bytes:
        return self.objects.get(_artifact(sha256))[0]

    def _deleted(self) -> list[tuple[str, ObjectInfo]]:
        """The tombstones, by version name."""
        found = []
        for info in self.objects.list(DELETED):
            match = _DELETED_KEY.match(info.name)
            if match:
                found.append((match.group(1), info))
        return found

    def _next_number(self) -> int:
        """Max + 1 over the listed versions and the tombstones. Listed first: a version
        unlisted after that listing had its tombstone written before, so the second listing
        sees it, and a deleted number is never given again."""
        taken = [_number(name) for name in self.version_names()]
        taken += [_number(name) for name, _ in self._deleted()]
        return max(taken, default=0) + 1

    def save(self, dump: Callable[[BinaryIO], None], make_metadata: MakeMetadata) -> str:
        buffer = io.BytesIO()
        dump(buffer)
        data = buffer.getvalue()
        sha256 = hashlib.sha256(data).hexdigest()
        self.objects.put(_artifact(sha256), data)
        for _ in range(SAVE_ATTEMPTS):
            name = f"v{self._next_number()}"
            try:
                self.objects.put(
                    f"{VERSIONS}{name}.json", make_metadata(name, sha256, len(data)), if_absent=True
                )
            except PreconditionFailed:
                log.info("version %s was taken by another writer; trying the next number", name)
                continue
            self._artifact_of[name] = sha256
            if self.objects.head(_artifact(sha256)) is None:
                # Deleting a version with the same bytes removed them between the upload and
                # the commit (see _remove_artifact): they are needed again.
                log.warning("artifact of %s was removed before its commit; storing it again", name)
                self.objects.put(_artifact(sha256), data)
            self._cleanup_quietly()
            return name
        raise ConflictError(
            f"no free version number after {SAVE_ATTEMPTS} attempts: too many writers at once"
        )

    def delete_version(self, name: str, guard: AliasGuard) -> bool:
        """Tombstone, unlist, compare-and-set the alias with ``guard``'s document (undone if
        the guard refuses), then the artifact: see the module's docstring for why this order
        cannot lose to a concurrent promotion."""
        key = f"{VERSIONS}{name}.json"
        listed = self.objects.head(key)
        if listed is None:
            return False
        try:
            metadata = self.objects.get(key)[0]
        except FileNotFoundError:
            return False
        guard(self.read_alias())  # the usual refusal, before anything is written
        self.objects.put(f"{DELETED}{name}.json", metadata)
        self.objects.delete(key)  # unlisted: the next lookup of it is a 404
        try:
            self.update_alias(guard)
        except BaseException:
            self._restore_quietly(name, metadata)
            raise
        self._artifact_of.pop(name, None)
        self._remove_artifact(metadata, listed.modified)
        return True

    def _restore(self, name: str, metadata: bytes) -> None:
        """Undo an unlisting: the metadata back (unless a concurrent undo did it), then the
        tombstone away."""
        with contextlib.suppress(PreconditionFailed):
            self.objects.put(f"{VERSIONS}{name}.json", metadata, if_absent=True)
        self.objects.delete(f"{DELETED}{name}.json")
        log.info("version %s is listed again: its deletion was refused", name)

    def _restore_quietly(self, name: str, metadata: bytes) -> None:
        """The refusal is what the caller must hear; a failed undo is left to cleanup."""
        try:
            self._restore(name, metadata)
        except Exception:
            log.warning("could not list %s again; cleanup will", name, exc_info=True)

    def _remove_artifact(self, metadata: bytes, committed: datetime) -> None:
        """Delete a deleted version's artifact unless another listed version has the same
        bytes, or a writer stored them again after this version was published (it may be about
        to publish a version naming them: the orphan cleanup takes them later if not). The
        rare writer that stored them before and publishes after this check stores them once
        more after its commit (see :meth:`save`)."""
        try:
            key = _artifact(str(json.loads(metadata)["artifact_sha256"]))
        except (ValueError, KeyError, TypeError, OSError):
            log.warning("a deleted version's metadata names no artifact; cleanup will decide")
            return
        used = self._used_artifacts(self.version_names())
        if used is None or key in used:
            return
        now = self.objects.head(key)
        if now is None or now.modified > committed:
            return
        self.objects.delete(key)

    # -- the alias ----------------------------------------------------------------------------

    def read_alias(self) -> bytes | None:
        try:
            return self.objects.get(ALIAS)[0]
        except FileNotFoundError:
            return None

    def update_alias(self, change: AliasChange) -> None:
        for _ in range(ALIAS_ATTEMPTS):
            try:
                current, etag = self.objects.get(ALIAS)
            except FileNotFoundError:
                current, etag = None, None
            document = change(current)
            if document is None:
                return
            try:
                if etag is None:
                    self.objects.put(ALIAS, document, if_absent=True)
                else:
                    self.objects.put(ALIAS, document, if_match=etag)
            except PreconditionFailed:
                log.info("the production alias changed under this update; recomputing it")
                continue
            return
        raise ConflictError(
            f"the production alias kept changing ({ALIAS_ATTEMPTS} attempts): try again"
        )

    def alias_token(self) -> AliasToken | None:
        """The alias object's ETag (every write changes it: its content has a fresh
        ``updated_at``), folded into the token's three integers by a hash."""
        info = self.objects.head(ALIAS)
        if info is None:
            return None
        digest = hashlib.blake2b(info.etag.encode(), digest_size=8).digest()
        return (int.from_bytes(digest, "big"), int(info.modified.timestamp()), info.size)

    # -- housekeeping -------------------------------------------------------------------------

    def _cleanup_quietly(self) -> None:
        """Housekeeping piggybacks on saves; it must never fail a save that already committed."""
        try:
            self.cleanup(3600)
        except Exception:
            log.warning("artifact cleanup failed", exc_info=True)

    def _used_artifacts(self, names: list[str]) -> set[str] | None:
        """The artifact keys the versions ``names`` use; None if one of them is unreadable."""
        for name in names:
            if name not in self._artifact_of:
                try:
                    document = json.loads(self.read_metadata(name))
                    self._artifact_of[name] = str(document["artifact_sha256"])
                except (OSError, ValueError, KeyError, TypeError):
                    log.warning("version %s has unreadable metadata; keeping every artifact", name)
                    return None
        return {
            f"{ARTIFACTS}{sha}.joblib" for name, sha in self._artifact_of.items() if name in names
        }

    def _restore_referenced(self, cutoff: datetime) -> int:
        """Finish what a deletion that died halfway left: a version the alias names must be
        listed. Its deletion stopped between the unlisting and the alias check, and a
        promotion won the race (no finished deletion leaves a version the alias names)."""
        stale = [(name, info) for name, info in self._deleted() if info.modified <= cutoff]
        if not stale:
            return 0
        referenced = _alias_names(self.read_alias())
        listed = set(self.version_names())
        restored = 0
        for name, info in stale:
            if name in referenced and name not in listed:
                self._restore(name, self.objects.get(info.name)[0])
                restored += 1
        return restored

    def cleanup(self, older_than_seconds: float) -> int:
        """List again the versions a deletion cut short left unlisted while the alias names
        them; delete artifacts that no version names; both once older than the cutoff."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        restored = self._restore_referenced(cutoff)
        candidates = [info for info in self.objects.list(ARTIFACTS) if info.modified <= cutoff]
        if not candidates:
            return restored
        names = self.version_names()
        used = self._used_artifacts(names)
        if used is None:
            return restored
        removed = 0
        for info in candidates:
            if info.name in used:
                continue
            # Looked at again just before: a writer may have stored the same bytes since.
            now = self.objects.head(info.name)
            if now is None or now.modified > cutoff:
                continue
            self.objects.delete(info.name)
            removed += 1
        if removed:
            log.info("removed %d orphaned artifact(s) from %s", removed, self.objects)
        return restored + removed
