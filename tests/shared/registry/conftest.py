"""Every registry test runs on both storages: a local folder and the session's SeaweedFS."""

from pathlib import Path

import pytest

from shared.registry.versions import ModelRegistry
from tests.shared.registry.backends import Backend


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", root=tmp_path / "models")
    return Backend("s3", settings=request.getfixturevalue("s3_settings"))


@pytest.fixture
def registry(backend: Backend) -> ModelRegistry:
    return backend.open()


@pytest.fixture
def local_registry(tmp_path: Path) -> ModelRegistry:
    """For what only a folder has: staging folders, symlinks, flock, mtimes."""
    return ModelRegistry(tmp_path / "models")
