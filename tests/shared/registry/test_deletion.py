"""Deleting versions, retention, numbers never reused, and the paged listing, on both storages
(a folder and the session's SeaweedFS); then the races with a concurrent promotion, made to
happen in a known order on each storage."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.errors import VersionInUseError, VersionNotFoundError
from shared.registry.versions import ModelRegistry
from shared.storage import local as local_module
from shared.storage.s3_registry import ALIAS, DELETED, VERSIONS, S3RegistryStorage
from tests.s3_server import SeaweedS3
from tests.shared.registry.backends import Backend
from tests.shared.registry.helper import tiny_model


@pytest.fixture(scope="module")
def bucket(s3_server: SeaweedS3) -> str:
    """One bucket for the module, a prefix per test: every new bucket costs the session's
    SeaweedFS volumes of its own, and it has a bounded number of them."""
    return s3_server.new_bucket()


def s3_backend(server: SeaweedS3, bucket: str) -> Backend:
    return Backend("s3", settings=server.settings(f"s3://{bucket}/rvt-{uuid.uuid4().hex[:8]}/"))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """As the registry tests' own, with this module's bucket."""
    if request.param == "local":
        return Backend("local", root=tmp_path / "models")
    return s3_backend(request.getfixturevalue("s3_server"), request.getfixturevalue("bucket"))


def names(registry: ModelRegistry) -> list[str]:
    return [info.version for info in registry.list_versions()]


def save(registry: ModelRegistry, count: int) -> None:
    for i in range(count):
        registry.save_version(tiny_model(len(names(registry)) + i), {"i": i})


def stored(backend: Backend) -> list[str]:
    """What the registry keeps: entries of the folder (staging and tombstones included), or
    every object of the store."""
    if backend.kind == "s3":
        return backend.object_names()
    assert backend.root is not None
    return sorted(
        str(path.relative_to(backend.root))
        for path in backend.root.rglob("*")
        if path.parent == backend.root or path.parent.name in {".staging", ".deleted"}
    )


# -- deleting --------------------------------------------------------------------------------


def test_a_deleted_version_is_gone_with_its_bytes(
    backend: Backend, registry: ModelRegistry
) -> None:
    save(registry, 3)
    registry.promote("v1")
    v2 = registry.get("v2")

    registry.delete("v2")

    assert names(registry) == ["v1", "v3"]
    for lookup in (registry.get, registry.load):
        with pytest.raises(VersionNotFoundError, match="v2"):
            lookup("v2")
    with pytest.raises(VersionNotFoundError):
        registry.delete("v2")  # once
    with pytest.raises(VersionNotFoundError):
        registry.promote("v2")
    everything = stored(backend)
    if backend.kind == "local":
        assert "v2" not in everything and ".deleted/v2" in everything
        assert not any(entry.startswith(".staging/") for entry in everything)
    else:
        sha = v2.metadata["artifact_sha256"]
        assert f"{VERSIONS}v2.json" not in everything
        assert f"artifacts/{sha}.joblib" not in everything
        assert f"{DELETED}v2.json" in everything
    assert registry.production_version() == "v1"
    assert registry.load("v3") is not None


def test_production_and_the_rollback_history_cannot_be_deleted(
    backend: Backend, registry: ModelRegistry
) -> None:
    save(registry, 4)
    for version in ("v1", "v2", "v3"):
        registry.promote(version)
    before, alias = stored(backend), backend.read_alias()

    with pytest.raises(VersionInUseError, match=r"^v3 is the production version") as caught:
        registry.delete("v3")
    assert caught.value.status_code == 409 and caught.value.code == "version_in_use"
    with pytest.raises(VersionInUseError, match=r"^v2 is in the rollback history \(position 1\)"):
        registry.delete("v2")
    with pytest.raises(VersionInUseError, match=r"v1 is in the rollback history \(position 2\)"):
        registry.delete("v1")

    assert stored(backend) == before and backend.read_alias() == alias
    registry.delete("v4")
    registry.rollback()  # v3 leaves the history for good: it can go now
    registry.delete("v3")
    assert names(registry) == ["v1", "v2"]


@pytest.mark.parametrize("version", ["v9", "v01", "../v1", "v1/", "production.json", ".deleted"])
def test_deleting_what_is_not_listed_is_not_found(registry: ModelRegistry, version: str) -> None:
    save(registry, 1)
    with pytest.raises(VersionNotFoundError):
        registry.delete(version)
    assert names(registry) == ["v1"]


def test_numbers_are_never_given_again(backend: Backend, registry: ModelRegistry) -> None:
    save(registry, 2)
    registry.delete("v2")  # the newest
    assert registry.save_version(tiny_model(), {}).version == "v3"
    registry.delete("v3")
    other_host = backend.open()
    assert other_host.save_version(tiny_model(), {}).version == "v4"
    assert names(registry) == ["v1", "v4"]


def test_a_version_sharing_its_bytes_with_a_deleted_one_still_loads(
    registry: ModelRegistry,
) -> None:
    model = tiny_model(5)
    first = registry.save_version(model, {})
    second = registry.save_version(model, {})
    assert first.metadata["artifact_sha256"] == second.metadata["artifact_sha256"]

    registry.delete("v1")

    assert registry.load("v2").predict([[1.0, 0.0]]) is not None


# -- retention -------------------------------------------------------------------------------


def test_retention_keeps_the_newest_besides_production_and_history(
    registry: ModelRegistry,
) -> None:
    save(registry, 7)
    registry.promote("v2")
    registry.promote("v4")  # production v4, history [v2]

    assert registry.apply_retention(0) == []
    assert registry.apply_retention(2) == ["v1", "v3", "v5"]

    assert names(registry) == ["v2", "v4", "v6", "v7"]
    assert registry.apply_retention(2) == []
    assert registry.save_version(tiny_model(), {}).version == "v8"
    assert registry.apply_retention(2) == ["v6"]


# -- the paged listing -----------------------------------------------------------------------


def test_pages_go_newest_first_and_read_only_their_own_metadata(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(registry, 5)
    read: list[str] = []
    original = registry.storage.read_metadata

    def counting(name: str) -> bytes:
        read.append(name)
        return original(name)

    monkeypatch.setattr(registry.storage, "read_metadata", counting)

    first = registry.page(2)
    assert ([v.version for v in first.versions], first.total, first.next_before) == (
        ["v5", "v4"], 5, "v4",
    )  # fmt: skip
    assert read == ["v5", "v4"]
    second = registry.page(2, first.next_before)
    assert [v.version for v in second.versions] == ["v3", "v2"]
    registry.delete("v2")  # between two pages: the cursor is a number, nothing is skipped
    third = registry.page(2, "v3")
    assert ([v.version for v in third.versions], third.total, third.next_before) == (
        ["v1"], 4, None,
    )  # fmt: skip
    assert registry.page(10).next_before is None
    with pytest.raises(ValueError):
        registry.page(2, "../v1")


# -- several hosts ---------------------------------------------------------------------------


def test_a_deletion_on_one_host_is_seen_by_another(backend: Backend) -> None:
    """Two registry objects on the same folder or bucket: two hosts."""
    first, second = backend.open(), backend.open()
    save(first, 3)
    first.promote("v3")
    assert second.load("v2") is not None

    first.delete("v2")

    assert names(second) == ["v1", "v3"]
    assert [v.version for v in second.page(5).versions] == ["v3", "v1"]
    for lookup in (second.get, second.load):
        with pytest.raises(VersionNotFoundError):
            lookup("v2")


# -- racing a promotion ----------------------------------------------------------------------


def _run(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException | str]]:
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            target()
            outcome.append("done")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_local_a_deletion_asked_during_a_promotion_waits_for_it_and_is_refused(
    local_registry: ModelRegistry,
) -> None:
    """The deletion starts while the promotion holds the alias (its change is running): it
    waits for the lock, then finds v2 in production."""
    promoter, deleter = local_registry, ModelRegistry(local_registry.root)
    save(promoter, 2)
    promoter.promote("v1")
    update = promoter.storage.update_alias
    threads: list[tuple[threading.Thread, list[BaseException | str]]] = []

    def update_alias(change: Callable[[bytes | None], bytes | None]) -> None:
        def racing(document: bytes | None) -> bytes | None:
            if not threads:
                threads.append(_run(lambda: deleter.delete("v2")))
            return change(document)

        update(racing)

    promoter.storage.update_alias = update_alias  # type: ignore[method-assign]
    promoter.promote("v2")
    ((thread, outcome),) = threads
    thread.join(timeout=30)

    assert len(outcome) == 1 and isinstance(outcome[0], VersionInUseError), outcome
    assert names(promoter) == ["v1", "v2"]
    assert promoter.production_version() == "v2"
    assert promoter.load("v2") is not None


def test_local_a_promotion_asked_during_a_deletion_finds_the_version_gone(
    local_registry: ModelRegistry,
) -> None:
    deleter, promoter = local_registry, ModelRegistry(local_registry.root)
    save(deleter, 2)
    deleter.promote("v1")
    delete_version = deleter.storage.delete_version
    threads: list[tuple[threading.Thread, list[BaseException | str]]] = []

    def racing_delete(name: str, guard: Callable[[bytes | None], bytes]) -> bool:
        def racing_guard(document: bytes | None) -> bytes:
            threads.append(_run(lambda: promoter.promote("v2")))
            return guard(document)

        return delete_version(name, racing_guard)

    deleter.storage.delete_version = racing_delete  # type: ignore[method-assign]
    deleter.delete("v2")
    ((thread, outcome),) = threads
    thread.join(timeout=30)

    assert len(outcome) == 1 and isinstance(outcome[0], VersionNotFoundError)
    assert names(deleter) == ["v1"] and deleter.production_version() == "v1"


def _on_put(
    registry: ModelRegistry,
    key: str,
    before: Callable[[], object] | None = None,
    after: Callable[[], object] | None = None,
) -> None:
    """Run ``before``/``after`` the first write of ``key`` by this registry (S3 only)."""
    storage = registry.storage
    assert isinstance(storage, S3RegistryStorage)
    put = storage.objects.put
    done: list[bool] = []

    def hooked(name: str, data: bytes, **conditions: Any) -> str:
        first = name == key and not done
        if first:
            done.append(True)
            if before is not None:
                before()
        etag = put(name, data, **conditions)
        if first and after is not None:
            after()
        return etag

    storage.objects.put = hooked  # type: ignore[method-assign]


@pytest.fixture
def s3_pair(s3_server: SeaweedS3, bucket: str) -> tuple[Backend, ModelRegistry, ModelRegistry]:
    backend = s3_backend(s3_server, bucket)
    return backend, backend.open(), backend.open()


def test_s3_a_promotion_between_the_check_and_the_unlisting_wins(
    s3_pair: tuple[Backend, ModelRegistry, ModelRegistry],
) -> None:
    """The deletion checked the alias (v2 not in it) and wrote its tombstone; another host
    promotes v2 before the unlisting. The deletion's compare-and-set of the alias sees it, and
    v2 is listed again."""
    backend, deleter, promoter = s3_pair
    save(deleter, 3)
    deleter.promote("v1")
    _on_put(deleter, f"{DELETED}v2.json", after=lambda: promoter.promote("v2"))

    with pytest.raises(VersionInUseError, match="v2 is the production version"):
        deleter.delete("v2")

    assert names(promoter) == ["v1", "v2", "v3"]
    assert promoter.production_version() == "v2"
    assert promoter.load("v2") is not None
    assert f"{DELETED}v2.json" not in backend.object_names()


def test_s3_a_promotion_that_looked_before_the_deletion_cannot_write_after_it(
    s3_pair: tuple[Backend, ModelRegistry, ModelRegistry],
) -> None:
    """The promotion found v2 listed and is about to write the alias when another host deletes
    v2 from start to end. Its compare-and-set then fails (the deletion rewrote the alias), and
    its retry finds v2 gone: production never names a deleted version."""
    _, deleter, promoter = s3_pair
    save(deleter, 3)
    deleter.promote("v1")
    _on_put(promoter, ALIAS, before=lambda: deleter.delete("v2"))

    with pytest.raises(VersionNotFoundError, match="v2"):
        promoter.promote("v2")

    assert names(promoter) == ["v1", "v3"]
    assert promoter.production_version() == "v1"
    assert json.loads(promoter.storage.read_alias() or b"{}")["version"] == "v1"


def test_s3_cleanup_lists_again_a_version_a_cut_short_deletion_left_in_production(
    s3_pair: tuple[Backend, ModelRegistry, ModelRegistry],
) -> None:
    """A deletion that died between unlisting v2 and checking the alias, while a promotion of
    v2 won the race: the alias names an unlisted version until cleanup lists it again from
    the tombstone."""
    backend, registry, _ = s3_pair
    save(registry, 2)
    registry.promote("v2")
    storage = registry.storage
    assert isinstance(storage, S3RegistryStorage)
    metadata = storage.read_metadata("v2")
    storage.objects.put(f"{DELETED}v2.json", metadata)
    storage.objects.delete(f"{VERSIONS}v2.json")
    with pytest.raises(VersionNotFoundError):
        registry.load("v2")

    assert registry.cleanup_staging(older_than_seconds=0) == 1

    assert names(registry) == ["v1", "v2"] and registry.load("v2") is not None
    assert f"{DELETED}v2.json" not in backend.object_names()


def test_s3_a_save_stores_its_bytes_again_if_a_deletion_took_them_before_its_commit(
    s3_pair: tuple[Backend, ModelRegistry, ModelRegistry],
) -> None:
    backend, registry, _ = s3_pair
    model = tiny_model(9)
    first = registry.save_version(model, {})
    key = f"artifacts/{first.metadata['artifact_sha256']}.joblib"
    storage = registry.storage
    assert isinstance(storage, S3RegistryStorage)
    _on_put(registry, f"{VERSIONS}v2.json", before=lambda: storage.objects.delete(key))

    registry.save_version(model, {})

    assert key in backend.object_names()
    assert registry.load("v2") is not None and registry.load("v1") is not None


def test_local_a_deletion_cut_short_leaves_only_what_cleanup_removes(
    local_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = local_registry
    save(registry, 2)
    with monkeypatch.context() as patch:
        patch.setattr(local_module.shutil, "rmtree", lambda *args, **kwargs: None)
        registry.delete("v2")  # as if killed right after the rename
    staging = registry.root / ".staging"
    (leftover,) = staging.iterdir()
    assert names(registry) == ["v1"]

    assert registry.cleanup_staging(older_than_seconds=0) == 1
    assert not leftover.exists()
    assert registry.save_version(tiny_model(), {}).version == "v3"
