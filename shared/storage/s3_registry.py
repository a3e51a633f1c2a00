"""The registry in an S3-compatible object store: conditional writes instead of locks.

Layout under the prefix::

    versions/v1.json            a version's metadata: its commit marker, written last
    artifacts/<sha256>.joblib   the artifact, written first, named by its content
    production.json             the alias {"version", "history", "updated_at"}

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
- **Artifacts** are named by their sha256, so the key is derived from the checked metadata,
  never from a client, and the checksum is verified before unpickling as on disk.
"""

from __future__ import annotations

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
from shared.storage.base import AliasChange, AliasToken, MakeMetadata
from shared.storage.s3 import ObjectStore, PreconditionFailed

__all__ = ["ALIAS_ATTEMPTS", "S3RegistryStorage"]

log = logging.getLogger(__name__)

VERSIONS = "versions/"
ARTIFACTS = "artifacts/"
ALIAS = "production.json"
#: Lost compare-and-set races a promotion retries before it reports a conflict.
ALIAS_ATTEMPTS = 20
#: Numbers a save tries before it gives up (each failure means another version was published).
SAVE_ATTEMPTS = 100
_VERSION_KEY = re.compile(r"^versions/(v[1-9][0-9]*)\.json$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _artifact(sha256: str) -> str:
    if not _SHA256.match(sha256):  # the key is built from metadata: check it is only a hash
        raise OSError(f"not a sha256: {sha256!r}")
    return f"{ARTIFACTS}{sha256}.joblib"


def _number(name: str) -> int:
    return int(name[1:])


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

    def save(self, dump: Callable[[BinaryIO], None], make_metadata: MakeMetadata) -> str:
        buffer = io.BytesIO()
        dump(buffer)
        data = buffer.getvalue()
        sha256 = hashlib.sha256(data).hexdigest()
        self.objects.put(_artifact(sha256), data)
        for _ in range(SAVE_ATTEMPTS):
            name = f"v{max(map(_number, self.version_names()), default=0) + 1}"
            try:
                self.objects.put(
                    f"{VERSIONS}{name}.json", make_metadata(name, sha256, len(data)), if_absent=True
                )
            except PreconditionFailed:
                log.info("version %s was taken by another writer; trying the next number", name)
                continue
            self._artifact_of[name] = sha256
            self._cleanup_quietly()
            return name
        raise ConflictError(
            f"no free version number after {SAVE_ATTEMPTS} attempts: too many writers at once"
        )

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

    def cleanup(self, older_than_seconds: float) -> int:
        """Delete artifacts that no version names and that are older than the cutoff."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        candidates = [info for info in self.objects.list(ARTIFACTS) if info.modified <= cutoff]
        if not candidates:
            return 0
        names = self.version_names()
        for name in names:
            if name not in self._artifact_of:
                try:
                    document = json.loads(self.read_metadata(name))
                    self._artifact_of[name] = str(document["artifact_sha256"])
                except (OSError, ValueError, KeyError, TypeError):
                    log.warning("version %s has unreadable metadata; keeping every artifact", name)
                    return 0
        used = {
            f"{ARTIFACTS}{sha}.joblib" for name, sha in self._artifact_of.items() if name in names
        }
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
        return removed
