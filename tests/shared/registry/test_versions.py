"""The model registry: numbering, atomic saves, concurrency, checksums and the production alias."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import pytest

from shared.errors import (
    ConflictError,
    GateFailedError,
    IntegrityError,
    VersionNotFoundError,
)
from shared.registry.versions import (
    ARTIFACT_NAME,
    HISTORY_LIMIT,
    METADATA_NAME,
    ModelRegistry,
    ProductionState,
)
from shared.storage import local as registry_module
from tests.shared.registry.backends import Backend
from tests.shared.registry.helper import (
    ExplodingPickle,
    UnpickleTrap,
    save_many,
    tiny_model,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
X_PROBE = np.array([[1.0, 0.0], [-1.0, 0.0]])


def names(registry: ModelRegistry) -> list[str]:
    return [info.version for info in registry.list_versions()]


def version_dirs(registry: ModelRegistry) -> list[str]:
    if not registry.root.exists():
        return []
    return sorted(p.name for p in registry.root.iterdir() if p.name.startswith("v"))


def staging_entries(registry: ModelRegistry) -> list[Path]:
    staging = registry.root / ".staging"
    return sorted(staging.iterdir()) if staging.exists() else []


def stored(backend: Backend) -> list[str]:
    """Everything the registry keeps: version folders and staging leftovers in a folder, every
    object in a store."""
    if backend.kind == "s3":
        return backend.object_names()
    registry = backend.open()
    return version_dirs(registry) + [f".staging/{p.name}" for p in staging_entries(registry)]


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"writer exited early ({proc.returncode}): {err.decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("writer never reached the point where it should be killed")
        time.sleep(0.02)


def start_writer(mode: str, root: Path, marker: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.shared.registry.helper", mode, str(root), str(marker)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


# -- reading an empty registry -----------------------------------------------------------------


def test_absent_root_reads_as_empty_and_is_not_created(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "nowhere")
    assert registry.list_versions() == []
    assert registry.production() == ProductionState(None, [], None)
    assert registry.production_version() is None
    assert registry.alias_token() is None
    assert registry.cleanup_staging(0) == 0
    with pytest.raises(VersionNotFoundError):
        registry.get("v1")
    assert not (tmp_path / "nowhere").exists()


# -- numbering ---------------------------------------------------------------------------------


def test_versions_are_numbered_from_one_and_ordered_as_numbers(
    backend: Backend, registry: ModelRegistry
) -> None:
    saved = [registry.save_version(tiny_model(i), {"i": i}) for i in range(11)]
    assert [info.version for info in saved] == [f"v{n}" for n in range(1, 12)]
    assert [info.number for info in saved] == list(range(1, 12))
    listed = registry.list_versions()
    assert [info.version for info in listed] == [f"v{n}" for n in range(1, 12)]
    assert [info.metadata["i"] for info in listed] == list(range(11))
    # v10 sorts after v9, not after v1 as a string would.
    assert names(registry).index("v10") == names(registry).index("v9") + 1
    assert registry.get("v10").number == 10
    folder = registry.root / "v10" if backend.kind == "local" else None
    assert registry.get("v10").path == folder


def test_next_number_is_max_plus_one_over_every_version_like_entry(
    local_registry: ModelRegistry,
) -> None:
    registry = local_registry
    registry.root.mkdir()
    for name in ("v2", "v9"):
        (registry.root / name).mkdir()
        (registry.root / name / METADATA_NAME).write_text(json.dumps({"version": name}))
    (registry.root / "v10").mkdir()  # incomplete: no metadata, not listed, but never reused
    (registry.root / "v011").mkdir()  # not a canonical name: ignored entirely
    (registry.root / "notes.txt").write_text("ignored")
    assert names(registry) == ["v2", "v9"]

    info = registry.save_version(tiny_model(), {})

    assert info.version == "v11"
    assert names(registry) == ["v2", "v9", "v11"]


def test_readers_ignore_staging_and_symlinked_versions(
    local_registry: ModelRegistry, tmp_path: Path
) -> None:
    registry = local_registry
    registry.save_version(tiny_model(), {})
    partial = registry.root / ".staging" / "abc"
    partial.mkdir(parents=True)
    (partial / METADATA_NAME).write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / METADATA_NAME).write_text(json.dumps({"version": "v7"}))
    (registry.root / "v7").symlink_to(outside, target_is_directory=True)

    assert names(registry) == ["v1"]
    with pytest.raises(VersionNotFoundError):
        registry.get("v7")


# -- metadata --------------------------------------------------------------------------------


def test_metadata_round_trip_with_checksum(backend: Backend, registry: ModelRegistry) -> None:
    given = {
        "metrics": {"roc_auc": 0.8125, "f1": None, "nested": {"deep": [1, 2.5, None]}},
        "gate": {"passed": True, "failures": []},
        "dataset": "cases é.csv",
        "version": "ignored: the registry names versions",
    }
    before = json.loads(json.dumps(given))

    info = registry.save_version(tiny_model(), given)

    assert given == before  # the caller's dict is not modified
    raw = backend.read_artifact(info)
    meta = info.metadata
    assert meta["version"] == "v1"
    assert meta["artifact_sha256"] == hashlib.sha256(raw).hexdigest()
    assert meta["artifact_bytes"] == len(raw)
    created = datetime.fromisoformat(meta["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    for key in ("metrics", "gate", "dataset"):
        assert meta[key] == given[key]
    assert registry.get("v1").metadata == meta
    text = backend.read_metadata_text(info)
    assert text == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    if backend.kind == "local":
        assert info.path is not None
        assert sorted(p.name for p in info.path.iterdir()) == [METADATA_NAME, ARTIFACT_NAME]
    else:
        assert info.path is None
        sha = meta["artifact_sha256"]
        assert stored(backend) == [f"artifacts/{sha}.joblib", "versions/v1.json"]


def test_load_returns_the_saved_model(registry: ModelRegistry) -> None:
    model = tiny_model(3)
    registry.save_version(model, {"note": "first"})

    loaded = registry.load("v1")

    assert registry.get("v1").metadata["note"] == "first"
    np.testing.assert_allclose(loaded.predict_proba(X_PROBE), model.predict_proba(X_PROBE))


@pytest.mark.parametrize(
    ("metadata", "error"),
    [({"bad": object()}, TypeError), ({"metric": float("nan")}, ValueError)],
)
def test_metadata_that_is_not_json_fails_before_anything_is_written(
    backend: Backend, registry: ModelRegistry, metadata: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        registry.save_version(tiny_model(), metadata)
    assert stored(backend) == []


# -- atomicity -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_writer_killed_mid_dump_leaves_no_version(
    local_registry: ModelRegistry, tmp_path: Path
) -> None:
    registry = local_registry
    registry.save_version(tiny_model(), {})
    marker = tmp_path / "dumping"
    proc = start_writer("slow-dump", registry.root, marker)
    wait_for(marker, proc)

    # It is in the staging phase: a partial artifact exists, nothing is published.
    (leftover,) = staging_entries(registry)
    assert (leftover / ARTIFACT_NAME).stat().st_size > 0
    assert not (leftover / METADATA_NAME).exists()
    kill(proc)

    assert version_dirs(registry) == ["v1"]
    assert names(registry) == ["v1"]
    assert registry.cleanup_staging() == 0  # fresh: it could still be a live writer
    assert registry.cleanup_staging(older_than_seconds=0) == 1
    assert staging_entries(registry) == []
    assert registry.save_version(tiny_model(), {}).version == "v2"


@pytest.mark.timeout(120)
def test_writer_killed_holding_the_lock_leaves_no_version_and_no_stuck_lock(
    local_registry: ModelRegistry, tmp_path: Path
) -> None:
    registry = local_registry
    registry.save_version(tiny_model(), {})
    marker = tmp_path / "renaming"
    proc = start_writer("hang-in-lock", registry.root, marker)
    wait_for(marker, proc)

    # Everything is staged, metadata included, but the rename never happened.
    (leftover,) = staging_entries(registry)
    assert json.loads((leftover / METADATA_NAME).read_text())["version"] == "v2"
    kill(proc)

    assert version_dirs(registry) == ["v1"]
    assert names(registry) == ["v1"]
    # The kernel released the dead writer's flock: the next save does not hang.
    assert registry.save_version(tiny_model(), {}).version == "v2"
    assert registry.cleanup_staging(older_than_seconds=0) == 1
    assert staging_entries(registry) == []


def test_failure_during_dump_leaves_nothing(backend: Backend, registry: ModelRegistry) -> None:
    registry.save_version(tiny_model(), {})
    before = stored(backend)
    with pytest.raises(RuntimeError, match="boom while pickling"):
        registry.save_version([tiny_model(), ExplodingPickle()], {})
    assert names(registry) == ["v1"]
    registry.cleanup_staging(older_than_seconds=0)
    assert stored(backend) == before
    assert registry.save_version(tiny_model(), {}).version == "v2"


def test_failure_during_rename_leaves_nothing(
    local_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = local_registry
    registry.save_version(tiny_model(), {})

    def failing_rename(src: object, dst: object) -> None:
        raise OSError("injected rename failure")

    with monkeypatch.context() as patch:
        patch.setattr(registry_module.os, "rename", failing_rename)
        with pytest.raises(OSError, match="injected rename failure"):
            registry.save_version(tiny_model(), {})

    assert version_dirs(registry) == ["v1"]
    assert names(registry) == ["v1"]
    registry.cleanup_staging(older_than_seconds=0)
    assert staging_entries(registry) == []
    assert registry.save_version(tiny_model(), {}).version == "v2"


def test_cleanup_staging_removes_only_stale_leftovers(local_registry: ModelRegistry) -> None:
    registry = local_registry
    staging = registry.root / ".staging"
    old, fresh = staging / "old", staging / "fresh"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / ARTIFACT_NAME).write_bytes(b"partial")
    long_ago = time.time() - 7200
    for path in (old / ARTIFACT_NAME, old):
        os.utime(path, (long_ago, long_ago))

    assert registry.cleanup_staging(older_than_seconds=3600) == 1
    assert staging_entries(registry) == [fresh]


# -- concurrency -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_concurrent_writers_get_distinct_complete_versions(
    backend: Backend, registry: ModelRegistry
) -> None:
    workers, per_worker = 4, 3
    # fork, like Celery's prefork pool: cheap, and the workers start with the registry imported.
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=save_many, args=(backend, w, per_worker, barrier, queue))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    saved = [name for names_of_worker in results for name in names_of_worker]
    expected = [f"v{n}" for n in range(1, workers * per_worker + 1)]
    assert sorted(saved, key=lambda name: int(name[1:])) == expected
    assert names(registry) == expected
    if backend.kind == "local":
        assert staging_entries(registry) == []
    seen = set()
    for name in expected:
        loaded, metadata = registry.load(name), registry.get(name).metadata
        assert (loaded["worker"], loaded["i"]) == (metadata["worker"], metadata["i"])
        loaded["estimator"].predict(X_PROBE)
        seen.add((metadata["worker"], metadata["i"]))
    assert seen == {(w, i) for w in range(workers) for i in range(per_worker)}


# -- checksums -------------------------------------------------------------------------------


def test_flipped_byte_is_refused(backend: Backend, registry: ModelRegistry) -> None:
    info = registry.save_version(tiny_model(), {})
    raw = bytearray(backend.read_artifact(info))
    raw[len(raw) // 2] ^= 0xFF
    backend.write_artifact(info, bytes(raw))

    with pytest.raises(IntegrityError, match="v1"):
        registry.load("v1")


def test_swapped_artifact_is_refused_without_being_unpickled(
    backend: Backend, registry: ModelRegistry, tmp_path: Path
) -> None:
    info = registry.save_version(tiny_model(), {})
    registry.promote("v1")
    marker = tmp_path / "unpickled.txt"
    trap = io.BytesIO()
    joblib.dump(UnpickleTrap(marker), trap)
    backend.write_artifact(info, trap.getvalue())
    # The trap works: loading the stored bytes directly does write the marker.
    joblib.load(io.BytesIO(backend.read_artifact(info)))
    assert marker.exists()
    marker.unlink()

    with pytest.raises(IntegrityError):
        registry.load("v1")
    assert not marker.exists()


def test_missing_artifact_or_checksum_is_refused(backend: Backend, registry: ModelRegistry) -> None:
    first = registry.save_version(tiny_model(0), {})
    second = registry.save_version(tiny_model(1), {})
    backend.delete_artifact(first)
    with pytest.raises(IntegrityError):
        registry.load("v1")

    meta = dict(second.metadata)
    del meta["artifact_sha256"]
    backend.write_metadata_text(second, json.dumps(meta))
    with pytest.raises(IntegrityError):
        registry.load("v2")


# -- production alias ------------------------------------------------------------------------


def test_promote_and_rollback_move_production_through_history(
    backend: Backend, registry: ModelRegistry
) -> None:
    for i in range(3):
        registry.save_version(tiny_model(i), {"i": i})
    assert registry.production_version() is None

    state = registry.promote("v1")
    assert (state.version, state.history) == ("v1", [])
    assert registry.promote("v2").history == ["v1"]
    state = registry.promote("v3")
    assert (state.version, state.history) == ("v3", ["v1", "v2"])
    assert registry.production() == state
    assert registry.production_version() == "v3"
    assert registry.get("v3").metadata["i"] == 2
    on_disk = json.loads(backend.read_alias() or b"null")
    assert on_disk == {"version": "v3", "history": ["v1", "v2"], "updated_at": state.updated_at}
    assert datetime.fromisoformat(on_disk["updated_at"]).utcoffset() == timedelta(0)

    state = registry.rollback()
    assert (state.version, state.history) == ("v2", ["v1"])
    state = registry.rollback()
    assert (state.version, state.history) == ("v1", [])
    with pytest.raises(ConflictError, match="nothing to roll back to"):
        registry.rollback()
    assert registry.production_version() == "v1"


def test_promoting_the_current_production_is_a_no_op(registry: ModelRegistry) -> None:
    registry.save_version(tiny_model(), {})
    first = registry.promote("v1")
    token = registry.alias_token()

    again = registry.promote("v1")

    assert again == first
    assert registry.alias_token() == token


def test_gate_failure_needs_force(registry: ModelRegistry) -> None:
    registry.save_version(tiny_model(), {"gate": {"passed": True}})
    registry.save_version(tiny_model(), {"gate": {"passed": False, "failures": ["roc_auc"]}})
    registry.promote("v1")

    with pytest.raises(GateFailedError, match="v2") as caught:
        registry.promote("v2")
    assert caught.value.code == "gate_failed"
    assert registry.production_version() == "v1"

    state = registry.promote("v2", force=True)
    assert (state.version, state.history) == ("v2", ["v1"])


def test_unknown_version_cannot_be_promoted(registry: ModelRegistry) -> None:
    registry.save_version(tiny_model(), {})
    with pytest.raises(VersionNotFoundError, match="v42"):
        registry.promote("v42")
    with pytest.raises(VersionNotFoundError, match="v42"):
        registry.load("v42")
    assert registry.production_version() is None
    assert registry.alias_token() is None


def test_alias_token_changes_on_every_promote_and_rollback(registry: ModelRegistry) -> None:
    registry.save_version(tiny_model(0), {})
    registry.save_version(tiny_model(1), {})
    tokens = [registry.alias_token()]
    assert tokens[0] is None
    # Back-to-back writes, far faster than a polling interval or a coarse clock tick.
    registry.promote("v1")
    tokens.append(registry.alias_token())
    for _ in range(15):
        registry.promote("v2")
        tokens.append(registry.alias_token())
        registry.rollback()
        tokens.append(registry.alias_token())
    assert registry.production() == ProductionState("v1", [], registry.production().updated_at)
    assert None not in tokens[1:]
    assert len(set(tokens)) == len(tokens)


def test_history_is_bounded(registry: ModelRegistry) -> None:
    registry.save_version(tiny_model(0), {})
    registry.save_version(tiny_model(1), {})
    for _ in range(HISTORY_LIMIT // 2 + 5):
        registry.promote("v1")
        state = registry.promote("v2")
    assert len(state.history) == HISTORY_LIMIT
    assert registry.production().history == state.history
    assert state.history[-1] == "v1"


# -- client strings are never paths ----------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    ["../x", "/etc/passwd", "v1/../v2", "./v1", "v1/", "v01", "V1", " v1", "v1\n", "", ".staging"],
)
def test_path_like_versions_are_not_found(
    registry: ModelRegistry, tmp_path: Path, version: str
) -> None:
    registry.save_version(tiny_model(0), {})
    registry.save_version(tiny_model(1), {})
    # Something that would be found if the string were joined onto the root.
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / METADATA_NAME).write_text(json.dumps({"version": "x"}))

    with pytest.raises(VersionNotFoundError):
        registry.get(version)
    with pytest.raises(VersionNotFoundError):
        registry.load(version)
    with pytest.raises(VersionNotFoundError):
        registry.promote(version)
    assert registry.production_version() is None


def test_alias_token_mtime_only_moves_forward(local_registry: ModelRegistry) -> None:
    registry = local_registry
    registry.save_version(tiny_model(0), {})
    registry.save_version(tiny_model(1), {})
    registry.promote("v1")
    # A clock stepped back (or a reused inode within one clock tick) must not repeat a token.
    future = time.time_ns() + 3_600 * 10**9
    os.utime(registry.root / "production.json", ns=(future, future))
    before = registry.alias_token()

    registry.promote("v2")

    after = registry.alias_token()
    assert before is not None and after is not None
    assert after[1] > before[1]
