"""What the loader reads: a local file, or a CSV that lives elsewhere (an object in a store)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Protocol

__all__ = ["CsvSource", "StoredCsv", "open_source", "source_size"]


class StoredCsv(Protocol):
    """A CSV that is not a local file: a name for messages, a size for progress, and a fresh
    binary stream at each :meth:`open_binary` (the loader reads the header, then the rows)."""

    @property
    def name(self) -> str: ...

    @property
    def size_bytes(self) -> int: ...

    def open_binary(self) -> IO[bytes]: ...


CsvSource = Path | StoredCsv


def open_source(source: CsvSource) -> IO[bytes]:
    return source.open("rb") if isinstance(source, Path) else source.open_binary()


def source_size(source: CsvSource) -> int:
    return source.stat().st_size if isinstance(source, Path) else source.size_bytes
