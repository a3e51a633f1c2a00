"""The datasets folder: what can be trained on, looked up by name, never by a client's path."""

from __future__ import annotations

import fcntl
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.errors import DatasetNotFoundError
from shared.synthetic import write_synthetic_csv

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.csv$")
DEFAULT_SEED = 20200122  # the day of the first case report in the CDC surveillance summary


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
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".default.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.is_file():
                write_synthetic_csv(target, self.default_rows, seed=DEFAULT_SEED)
        return self.get(self.default_name)
