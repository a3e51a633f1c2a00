"""The registry's two storages as the tests see them: how to open the same registry again (in
another process, say), and how to reach the bytes behind it to break them on purpose."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import stores
from shared.registry.versions import ARTIFACT_NAME, METADATA_NAME, ModelRegistry, ModelVersion
from shared.settings import Settings
from shared.storage.location import S3Location
from shared.storage.s3_registry import ALIAS, ARTIFACTS, VERSIONS

_CLIENTS: dict[tuple[int, str], Any] = {}  # by process and endpoint


@dataclass
class Backend:
    """``kind`` is "local" (a folder) or "s3" (a bucket and prefix on the session's SeaweedFS).
    Picklable and fork-safe: :meth:`open` makes a new registry object (a new client)."""

    kind: str
    root: Path | None = None
    settings: Settings | None = None

    def open(self) -> ModelRegistry:
        if self.kind == "local":
            assert self.root is not None
            return ModelRegistry(self.root)
        assert self.settings is not None
        return stores.model_registry(self.settings)

    # -- raw access to what is stored ----------------------------------------------------------

    @property
    def _location(self) -> S3Location:
        assert self.settings is not None and isinstance(self.settings.models_dir, S3Location)
        return self.settings.models_dir

    def _client(self) -> Any:
        """One client per process (making one takes a good part of a second)."""
        assert self.settings is not None
        key = (os.getpid(), self.settings.s3_endpoint_url or "")
        if key not in _CLIENTS:
            _CLIENTS[key] = stores.object_store(self.settings, self._location).client
        return _CLIENTS[key]

    def _key(self, name: str) -> str:
        return self._location.key(name)

    def _artifact_key(self, info: ModelVersion) -> str:
        return self._key(f"{ARTIFACTS}{info.metadata['artifact_sha256']}.joblib")

    def read_artifact(self, info: ModelVersion) -> bytes:
        if self.kind == "local":
            assert info.path is not None
            return (info.path / ARTIFACT_NAME).read_bytes()
        reply = self._client().get_object(
            Bucket=self._location.bucket, Key=self._artifact_key(info)
        )
        return bytes(reply["Body"].read())

    def write_artifact(self, info: ModelVersion, data: bytes) -> None:
        if self.kind == "local":
            assert info.path is not None
            (info.path / ARTIFACT_NAME).write_bytes(data)
            return
        self._client().put_object(
            Bucket=self._location.bucket, Key=self._artifact_key(info), Body=data
        )

    def delete_artifact(self, info: ModelVersion) -> None:
        if self.kind == "local":
            assert info.path is not None
            (info.path / ARTIFACT_NAME).unlink()
            return
        self._client().delete_object(Bucket=self._location.bucket, Key=self._artifact_key(info))

    def read_metadata_text(self, info: ModelVersion) -> str:
        if self.kind == "local":
            assert info.path is not None
            return (info.path / METADATA_NAME).read_text(encoding="utf-8")
        key = self._key(f"{VERSIONS}{info.version}.json")
        reply = self._client().get_object(Bucket=self._location.bucket, Key=key)
        return str(reply["Body"].read().decode("utf-8"))

    def write_metadata_text(self, info: ModelVersion, text: str) -> None:
        if self.kind == "local":
            assert info.path is not None
            (info.path / METADATA_NAME).write_text(text)
            return
        key = self._key(f"{VERSIONS}{info.version}.json")
        self._client().put_object(Bucket=self._location.bucket, Key=key, Body=text.encode())

    def read_alias(self) -> bytes | None:
        if self.kind == "local":
            assert self.root is not None
            path = self.root / "production.json"
            return path.read_bytes() if path.exists() else None
        client = self._client()
        try:
            reply = client.get_object(Bucket=self._location.bucket, Key=self._key(ALIAS))
        except client.exceptions.NoSuchKey:
            return None
        return bytes(reply["Body"].read())

    def object_names(self) -> list[str]:
        """Every object under the registry's prefix (S3 only)."""
        client = self._client()
        reply = client.list_objects_v2(Bucket=self._location.bucket, Prefix=self._location.prefix)
        cut = len(self._location.prefix)
        return sorted(item["Key"][cut:] for item in reply.get("Contents", []))
