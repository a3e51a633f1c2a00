"""``MODELS_DIR`` and ``DATA_DIR``: a local folder, or ``s3://BUCKET/PREFIX`` in an object store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["S3Location", "StoreLocation", "parse_location"]

# S3's own rules for bucket names (lowercase, digits, dots, hyphens; 3 to 63 characters).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Prefix segments: plain names only, so that a prefix can never climb out of itself.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix ("" or ending in "/") under which a store keeps its objects."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return self.prefix + name


StoreLocation = Path | S3Location


def parse_location(value: object) -> StoreLocation:
    """A folder path, or an ``s3://BUCKET/PREFIX`` URL checked strictly (a typo is an error at
    startup, not a store somewhere unexpected)."""
    if isinstance(value, Path | S3Location):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a folder path or an s3://BUCKET/PREFIX URL")
    if not value.lower().startswith("s3://"):
        return Path(value)
    bucket, _, prefix = value[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(
            f"{value!r}: the bucket name must be 3 to 63 lowercase letters, digits, dots or hyphens"
        )
    segments = [segment for segment in prefix.split("/") if segment]
    bad = [segment for segment in segments if not _SEGMENT.match(segment)]
    if bad:
        raise ValueError(
            f"{value!r}: each part of the prefix must be letters, digits, '.', '_' or '-', "
            f"and not start with a dot ({bad[0]!r})"
        )
    return S3Location(bucket, "".join(f"{segment}/" for segment in segments))
