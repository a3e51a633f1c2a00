"""The one interface the registry keeps its promises through, whatever the medium.

A :class:`RegistryStorage` makes each step of the registry atomic where it lives: a local
folder does it with ``flock`` and ``rename`` (:mod:`shared.storage.local`), an object store with
conditional writes (:mod:`shared.storage.s3_registry`). The rules (what a version is, what the
alias says, the checksum before unpickling) stay in :mod:`shared.registry.versions`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["AliasChange", "AliasGuard", "AliasToken", "MakeMetadata", "RegistryStorage"]

#: An opaque fingerprint of the alias that changes whenever the alias does: three integers,
#: so that it is cheap to compare and hash (local: the file's stat; S3: the object's ETag).
AliasToken = tuple[int, int, int]
#: ``(version name, artifact sha256, artifact bytes) -> metadata document``
MakeMetadata = Callable[[str, str, int], bytes]
#: The alias document now (None: none yet) -> the new one (None: leave it as it is).
AliasChange = Callable[[bytes | None], bytes | None]
#: The alias document now -> raises to keep the version being deleted; otherwise a document that
#: says the same as the current one but differs from it in its bytes (see ``delete_version``).
AliasGuard = Callable[[bytes | None], bytes]


class RegistryStorage(Protocol):
    """Where a registry's bytes live. Versions are named ``v<number>``; a version is listed
    only once its metadata is published, and its artifact is stored before that."""

    def describe(self) -> str:
        """Where this is, for messages and logs."""
        ...

    def version_names(self) -> list[str]:
        """The names of the published versions, in any order (plus, possibly, names that are
        not versions: the registry filters them)."""
        ...

    def version_path(self, name: str) -> Path | None:
        """The version's local folder, if it has one."""
        ...

    def read_metadata(self, name: str) -> bytes:
        """The metadata document of a listed version; OSError if it cannot be read."""
        ...

    def read_artifact(self, name: str, sha256: str) -> bytes:
        """The artifact bytes of a listed version whose metadata names ``sha256``; OSError if
        they cannot be read. The caller checks the checksum."""
        ...

    def save(self, dump: Callable[[BinaryIO], None], make_metadata: MakeMetadata) -> str:
        """Store the artifact ``dump`` writes, then publish it under the next free number with
        ``make_metadata``'s document: whole or not at all, and never under a number another
        writer took. The name it got."""
        ...

    def delete_version(self, name: str, guard: AliasGuard) -> bool:
        """Unlist version ``name``, then remove its artifact. ``guard(alias)`` decides, with the
        alias as it is when no promotion can come between the decision and the unlisting (a
        lock, or a compare-and-set that rewrites the alias with ``guard``'s document, so that a
        promotion computed on the old alias loses its own compare-and-set); if it raises, the
        version stays. The number is never given to another version. False if ``name`` is not
        listed. What a crash leaves halfway is finished or undone by ``cleanup``."""
        ...

    def read_alias(self) -> bytes | None: ...

    def update_alias(self, change: AliasChange) -> None:
        """Replace the alias by ``change(current)``, atomically against every other writer:
        ``change`` may run more than once, and may raise to leave the alias alone."""
        ...

    def alias_token(self) -> AliasToken | None: ...

    def cleanup(self, older_than_seconds: float) -> int:
        """Remove what crashed writers left (never a published version); how many things."""
        ...
