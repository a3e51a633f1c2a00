"""The crash-at-every-step test of ``test_faults.py``, for a registry in an object store.

A forked child runs one registry operation against the session's SeaweedFS and dies
(``os._exit``) before its k-th request, for every k (see :func:`run_request_crash`). After each
crash the registry must read whole and show the old state or the new one (the new version
exactly when its metadata was created, the new alias exactly when it was written), lose every
orphan to ``cleanup_staging``, and number the next save right after what exists. A request is
atomic on the server, so unlike a file write none is torn.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass

from shared.registry.versions import ModelRegistry, ProductionState
from shared.settings import Settings
from shared.storage.location import S3Location
from tests.shared.registry.backends import Backend
from tests.shared.registry.faults import CRASH_EXIT, Crash, run_request_crash
from tests.shared.registry.test_faults import OPERATIONS, SEEDS, Operation, tiny_model


@dataclass(frozen=True)
class Snapshot:
    versions: dict[str, str]  # name -> sha256 of its metadata document
    alias: bytes | None
    state: ProductionState

    @property
    def next_number(self) -> int:
        return max((int(name[1:]) for name in self.versions), default=0) + 1


def snapshot(backend: Backend) -> Snapshot:
    registry = backend.open()
    versions = {
        info.version: hashlib.sha256(backend.read_metadata_text(info).encode()).hexdigest()
        for info in registry.list_versions()
    }
    return Snapshot(versions, backend.read_alias(), registry.production())


class Templates:
    """The ``empty`` and ``live`` starting states of ``test_faults.py``, made once in one
    bucket and copied server-side to a fresh prefix for each crash."""

    def __init__(self, settings: Settings) -> None:
        assert isinstance(settings.models_dir, S3Location)
        self.settings = settings
        self.bucket = settings.models_dir.bucket
        live = self.backend("template-live/")
        registry = live.open()
        for i in range(3):
            registry.save_version(tiny_model(i), {"i": i, "gate": {"passed": True}})
        registry.promote("v1")
        registry.promote("v2")
        # What a writer that died between its artifact and its metadata leaves: an orphan.
        client = live._client()
        client.put_object(
            Bucket=self.bucket, Key="template-live/artifacts/" + "0" * 64 + ".joblib", Body=b"half"
        )

    def backend(self, prefix: str) -> Backend:
        location = S3Location(self.bucket, prefix)
        return Backend("s3", settings=self.settings.model_copy(update={"models_dir": location}))

    def fresh_copy(self, template: str) -> Backend:
        target = self.backend(f"run-{uuid.uuid4().hex[:12]}/")
        if template == "live":
            client = target._client()
            listed = client.list_objects_v2(Bucket=self.bucket, Prefix="template-live/")
            for item in listed.get("Contents", []):
                name = item["Key"][len("template-live/") :]
                client.copy_object(
                    Bucket=self.bucket,
                    Key=f"{target._location.prefix}{name}",
                    CopySource={"Bucket": self.bucket, "Key": item["Key"]},
                )
        return target


def verify_after_crash(
    backend: Backend, before: Snapshot, operation: Operation, crash: Crash
) -> tuple[bool, bool]:
    registry: ModelRegistry = backend.open()
    new_name = f"v{before.next_number}"
    saved = any(step.startswith(f"put versions/{new_name}.json") for step in crash.executed)
    aliased = any(step.startswith("put production.json") for step in crash.executed)

    listed = registry.list_versions()
    names = [info.version for info in listed]
    for info in listed:
        assert info.metadata["version"] == info.version
        registry.load(info.version)
    expected = sorted([*before.versions, *([new_name] if saved else [])], key=lambda n: int(n[1:]))
    assert names == expected, f"versions {names}, expected {expected}"
    after = snapshot(backend)
    for name, digest in before.versions.items():
        assert after.versions[name] == digest, f"{name} changed"

    state = registry.production()
    assert state.version is None or state.version in names, f"alias names {state.version}"
    assert all(item in names for item in state.history), f"history {state.history}"
    if aliased:
        assert operation.alias is not None, "an operation that must not touch the alias did"
        assert (state.version, state.history) == operation.alias(before.state, new_name)
    else:
        assert backend.read_alias() == before.alias, "alias changed without its write"

    # Orphans go with a cleanup; what stays is exactly the versions, their artifacts, the alias.
    registry.cleanup_staging(older_than_seconds=0)
    wanted = {f"versions/{info.version}.json" for info in listed}
    wanted |= {f"artifacts/{info.metadata['artifact_sha256']}.joblib" for info in listed}
    if state.version is not None:
        wanted.add("production.json")
    assert set(backend.object_names()) == wanted

    later = registry.save_version(tiny_model(99), {"after": "crash"})
    assert later.number == before.next_number + saved, f"next save got {later.version}"
    registry.load(later.version)
    assert registry.promote(later.version).version == later.version
    return saved, aliased


def test_a_crash_before_any_request_leaves_the_old_state_or_the_new_one(
    s3_settings: Settings,
) -> None:
    for seed in SEEDS:
        tiny_model(seed)
    templates = Templates(s3_settings)
    crashes: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for operation in OPERATIONS:
        full = run_request_crash(templates.fresh_copy(operation.template), operation.run, None)
        assert full.exit_code == 0, f"{operation.name} failed without a crash:\n{full.error}"
        assert any(step.startswith("put ") or step.startswith("delete ") for step in full.steps)
        for k in range(1, len(full.steps) + 1):
            backend = templates.fresh_copy(operation.template)
            before = snapshot(backend)
            crash = run_request_crash(backend, operation.run, k)
            where = f"{operation.name}, crash at request {k}/{len(full.steps)}"
            if crash.exit_code != CRASH_EXIT or len(crash.steps) != k:
                failures.append(f"{where}: exit {crash.exit_code} after {len(crash.steps)} steps")
                continue
            crashes[operation.name] += 1
            try:
                saved, aliased = verify_after_crash(backend, before, operation, crash)
            except Exception as exc:
                failures.append(f"{where} ({crash.steps[-1]}): {type(exc).__name__}: {exc}")
                continue
            outcomes["saved" if saved else "not saved"] += 1
            outcomes["aliased" if aliased else "alias kept"] += 1
    total = sum(crashes.values())
    print(f"\nS3 registry crashes: {total} injected ({dict(crashes)}); after them {dict(outcomes)}")
    assert failures == [], "\n".join(failures[:20])
    assert total >= 20


def test_the_request_counter_sees_the_commit_points(s3_settings: Settings) -> None:
    """The crash test relies on the labels: the metadata is created if absent, the alias
    replaced if it still matches."""
    templates = Templates(s3_settings)
    full = run_request_crash(
        templates.fresh_copy("live"),
        lambda r: (r.save_version(tiny_model(8), {}), r.promote("v4")),
        None,
    )
    assert full.exit_code == 0, full.error
    assert "put versions/v4.json if-absent" in full.steps
    assert "put production.json if-match" in full.steps
    puts = [step for step in full.steps if step.startswith("put ")]
    assert puts.index("put versions/v4.json if-absent") > 0  # after the artifact
