"""``python -m cli.storage init`` against a real SeaweedFS: it makes the buckets MODELS_DIR and
DATA_DIR name, once, and leaves folders alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cli.storage import main
from shared.settings import get_settings
from tests.s3_server import SeaweedS3


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_init_makes_missing_buckets_once(
    s3_server: SeaweedS3, fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models, data = (f"init-{uuid.uuid4().hex[:12]}" for _ in range(2))
    for name, value in {
        **s3_server.env(),
        "MODELS_DIR": f"s3://{models}/models",
        "DATA_DIR": f"s3://{data}/datasets",
    }.items():
        fresh_settings.setenv(name, value)
    assert main(["init", "--wait", "10"]) == 0
    assert f"bucket {models}: created" in capsys.readouterr().out
    names = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert {models, data} <= names
    assert main(["init", "--wait", "10"]) == 0
    assert f"bucket {data}: exists" in capsys.readouterr().out


def test_init_with_folders_makes_nothing(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("MODELS_DIR", "models")
    fresh_settings.setenv("DATA_DIR", "data")
    assert main(["init"]) == 0
    assert "nothing to make" in capsys.readouterr().out


def test_an_unreachable_store_is_a_clear_failure(
    s3_server: SeaweedS3, fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in s3_server.env().items():
        fresh_settings.setenv(name, value)
    fresh_settings.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    fresh_settings.setenv("MODELS_DIR", "s3://never-made/models")
    assert main(["init", "--wait", "1"]) == 1
    assert "cannot make the buckets" in capsys.readouterr().err
