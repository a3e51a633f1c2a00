"""Faults, by the dozen: crashes at every step of the registry's writes, and promotions racing.

- A forked child runs one registry operation and dies (``os._exit``) before its k-th file system
  step, for every k (see :mod:`tests.shared.registry.faults`); a write is torn at its crash.
  After each crash the registry must read whole, show either the old or the new state (the new
  one exactly when the commit step ran), keep nothing half-written where readers look, lose
  its leftovers to ``cleanup_staging``, and number the next save right after what exists.
- The same operations, run to the end, must make each commit durable before returning: every
  file fsynced before it is published, and the folder of each rename fsynced after it.
- Two processes promote different versions at once, a hundred times, while a third reads the
  alias all along.

Run with ``pytest -s`` to see the counts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import multiprocessing
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.model.training import register_run
from shared.registry.versions import HISTORY_LIMIT, ModelRegistry, ProductionState
from tests.shared.registry.backends import Backend
from tests.shared.registry.faults import CRASH_EXIT, Crash, promote_on_command, run_step_crash
from tests.shared.registry.helper import tiny_model as fit_tiny_model

#: What may sit in the registry's root besides version folders, once staging is cleaned.
ROOT_FILES = {"production.json", ".lock", ".staging"}


@functools.cache
def tiny_model(seed: int) -> Any:
    """Fitted once per seed: a fit costs more than a save, and there are hundreds of saves."""
    return fit_tiny_model(seed)


#: The models the operations save (see :data:`OPERATIONS`).
SEEDS = (8, 42, 99)


def _is_version(name: str) -> bool:
    return name.startswith("v") and name[1:].isdigit()


def _number(name: str) -> int:
    return int(name[1:])


# -- the states a crash starts from, and the operations it interrupts ------------------------


@dataclass(frozen=True)
class Snapshot:
    """A registry as bytes on disk: each version's files, and the alias."""

    versions: dict[str, str]
    alias: bytes | None
    state: ProductionState

    @property
    def next_number(self) -> int:
        return max((_number(name) for name in self.versions), default=0) + 1


def _digest(folder: Path) -> str:
    hashed = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        hashed.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return hashed.hexdigest()


def snapshot(root: Path) -> Snapshot:
    versions = {}
    if root.is_dir():
        versions = {p.name: _digest(p) for p in root.iterdir() if _is_version(p.name)}
    alias_path = root / "production.json"
    alias = alias_path.read_bytes() if alias_path.exists() else None
    return Snapshot(versions, alias, ModelRegistry(root).production())


def make_templates(base: Path) -> dict[str, Path]:
    """``empty``: no registry folder yet. ``live``: v1..v3, v2 in production after v1, and a
    stale leftover of a crashed writer in staging (the next save's housekeeping removes it)."""
    live = base / "live"
    registry = ModelRegistry(live)
    for i in range(3):
        registry.save_version(tiny_model(i), {"i": i, "gate": {"passed": True}})
    registry.promote("v1")
    registry.promote("v2")
    leftover = live / ".staging" / "0123456789abcdef0123456789abcdef"
    leftover.mkdir(parents=True)
    (leftover / "model.joblib").write_bytes(b"half a model")
    stale = time.time() - 7200
    for path in (leftover / "model.joblib", leftover):
        os.utime(path, (stale, stale))
    return {"empty": base / "empty", "live": live}


def fresh_copy(template: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    if template.exists():
        shutil.copytree(template, target, symlinks=True)
    return target


def _register(registry: ModelRegistry) -> object:
    """What a training does at its end (save, then promote), through the training code itself.
    From the empty template it is also the first save and the first alias ever written."""
    run = SimpleNamespace(
        pipeline=tiny_model(42),
        metadata={"rows": {"read": 20}, "gate": {"passed": True}},
        gate=SimpleNamespace(passed=True),
    )
    return register_run(registry, run)  # type: ignore[arg-type]


def _promoted(state: ProductionState, version: str) -> tuple[str, list[str]]:
    history = [*state.history, state.version] if state.version else list(state.history)
    return version, history[-HISTORY_LIMIT:]


@dataclass(frozen=True)
class Operation:
    name: str
    template: str
    run: Callable[[ModelRegistry], object]
    #: (state before, name the next save gets) -> the alias (version, history) once committed
    alias: Callable[[ProductionState, str], tuple[str, list[str]]] | None = None


OPERATIONS = [
    Operation("first training", "empty", _register, lambda s, new: _promoted(s, new)),
    Operation("save", "live", lambda r: r.save_version(tiny_model(8), {"op": "save"})),
    Operation("promote", "live", lambda r: r.promote("v3"), lambda s, new: _promoted(s, "v3")),
    Operation(
        "rollback", "live", lambda r: r.rollback(), lambda s, new: (s.history[-1], s.history[:-1])
    ),
    Operation("training", "live", _register, lambda s, new: _promoted(s, new)),
    Operation("cleanup", "live", lambda r: r.cleanup_staging(older_than_seconds=0)),
]


# -- what must hold after any crash ----------------------------------------------------------


@dataclass
class Outcome:
    saved: bool
    aliased: bool


def verify_after_crash(root: Path, before: Snapshot, operation: Operation, crash: Crash) -> Outcome:
    """Every check of one crash; an AssertionError names the first one that failed."""
    registry = ModelRegistry(root)
    new_name = f"v{before.next_number}"
    saved = any(
        step.startswith("rename ") and step.endswith(f" -> {new_name}") for step in crash.executed
    )
    aliased = any(
        step.startswith("replace ") and step.endswith(" -> production.json")
        for step in crash.executed
    )

    # The registry reads whole: every listed version loads (its checksum passes), and every
    # version-like folder on disk is one of them (none half-written, none hidden).
    listed = registry.list_versions()
    names = [info.version for info in listed]
    entries = list(root.iterdir()) if root.exists() else []
    on_disk = sorted((p.name for p in entries if _is_version(p.name)), key=_number)
    assert on_disk == names, f"version folders {on_disk} but listed versions {names}"
    for info in listed:
        assert registry.get(info.version).metadata == info.metadata
        assert info.metadata["version"] == info.version
        registry.load(info.version)

    # Old or new, nothing else: the new version exactly when its rename ran, the versions that
    # were there byte for byte unchanged.
    expected = sorted([*before.versions, *([new_name] if saved else [])], key=_number)
    assert names == expected, f"versions {names}, expected {expected}"
    for name, digest in before.versions.items():
        assert _digest(root / name) == digest, f"{name} changed"

    # The alias names a complete version (or none): the new state exactly when its replace ran.
    state = registry.production()
    assert state.version is None or state.version in names, f"alias names {state.version}"
    assert all(item in names for item in state.history), f"history {state.history}"
    if aliased:
        assert operation.alias is not None, "an operation that must not touch the alias did"
        assert (state.version, state.history) == operation.alias(before.state, new_name)
    else:
        alias_path = root / "production.json"
        now = alias_path.read_bytes() if alias_path.exists() else None
        assert now == before.alias, f"alias changed without its replace: {now!r}"

    # Leftovers go with a cleanup, and nothing else is left lying about.
    registry.cleanup_staging(older_than_seconds=0)
    staging = root / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == [], "staging not cleaned"
    entries = list(root.iterdir()) if root.exists() else []
    strays = sorted(p.name for p in entries if not _is_version(p.name) and p.name not in ROOT_FILES)
    assert strays == [], f"left in the registry after cleanup: {strays}"

    # The lock was not kept; the next save gets the next number; the alias can move on.
    later = registry.save_version(tiny_model(99), {"after": "crash"})
    assert later.number == before.next_number + saved, f"next save got {later.version}"
    registry.load(later.version)
    assert registry.promote(later.version).version == later.version
    assert registry.production_version() == later.version
    return Outcome(saved, aliased)


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for seed in SEEDS:  # fitted here, once, not in every forked child
        tiny_model(seed)
    return make_templates(tmp_path_factory.mktemp("templates"))


def test_a_crash_at_every_step_leaves_the_old_state_or_the_new_one(
    templates: dict[str, Path], tmp_path: Path
) -> None:
    crashes: Counter[str] = Counter()
    saved = aliased = kept = torn_writes = 0
    failures: list[str] = []
    for operation in OPERATIONS:
        template = templates[operation.template]
        # A run to the end: how many steps there are to crash at.
        full = run_step_crash(fresh_copy(template, tmp_path / "count"), operation.run, None)
        assert full.exit_code == 0, f"{operation.name} failed without a crash:\n{full.error}"
        assert full.steps, f"{operation.name} made no file system call"
        for k in range(1, len(full.steps) + 1):
            root = fresh_copy(template, tmp_path / "crash")
            before = snapshot(root)
            crash = run_step_crash(root, operation.run, k)
            where = f"{operation.name}, crash at step {k}/{len(full.steps)}"
            if crash.exit_code != CRASH_EXIT or len(crash.steps) != k:
                failures.append(f"{where}: exit {crash.exit_code} after {len(crash.steps)} steps")
                continue
            crashes[operation.name] += 1
            torn_writes += crash.steps[-1].startswith("write")
            try:
                outcome = verify_after_crash(root, before, operation, crash)
            except Exception as exc:
                failures.append(f"{where} ({crash.steps[-1]}): {type(exc).__name__}: {exc}")
                continue
            saved += outcome.saved
            aliased += outcome.aliased
            kept += not outcome.aliased
    total = sum(crashes.values())
    print(
        f"\nregistry crashes: {total} injected ({', '.join(f'{n}: {c}' for n, c in crashes.items())}; "
        f"{torn_writes} of them torn writes); after them {saved} new versions complete and "
        f"{total - saved} absent, {aliased} aliases moved and {kept} unchanged, "
        f"{len(failures)} torn or inconsistent"
    )
    assert failures == [], "\n".join(failures[:20])
    assert total >= 100


# -- durability: what a process crash cannot show, the order of the steps does ----------------


def durability_problems(steps: list[str]) -> list[str]:
    """The rules that make a commit survive a power loss, checked on the order of the steps:

    - a file written is fsynced before it is published (renamed, or its folder renamed);
    - a folder renamed into place was fsynced after its last change (its entries are durable);
    - the folder that receives a rename or replace is fsynced after it;
    - every rename and replace happens while the lock is held.
    """
    problems: list[str] = []
    dirty: set[str] = set()  # files written and not yet fsynced, and folders changed since
    locked = False
    for i, step in enumerate(steps):
        verb, _, rest = step.partition(" ")
        if verb == "flock":
            locked = True
        elif verb == "write":
            path = rest.rsplit(" ", 1)[0]
            dirty.update({path, os.path.dirname(path) or "."})
        elif verb == "open" and rest.endswith(" wb"):
            path = rest[: -len(" wb")]
            dirty.update({path, os.path.dirname(path) or "."})
        elif verb == "fsync":
            dirty.discard(rest)
        elif verb in {"rename", "replace"}:
            source, _, target = rest.partition(" -> ")
            unsynced = sorted(p for p in dirty if p == source or p.startswith(source + "/"))
            if unsynced:
                problems.append(f"{step}: published before fsync of {unsynced}")
            if not locked:
                problems.append(f"{step}: not under the lock")
            parent = os.path.dirname(target) or "."
            if f"fsync {parent}" not in steps[i + 1 :]:
                problems.append(f"{step}: folder {parent!r} never fsynced after it")
    return problems


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.name)
def test_every_commit_is_durable_before_the_operation_returns(
    operation: Operation, templates: dict[str, Path], tmp_path: Path
) -> None:
    root = fresh_copy(templates[operation.template], tmp_path / "models")
    full = run_step_crash(root, operation.run, None)
    assert full.exit_code == 0, full.error
    assert durability_problems(full.steps) == []


def test_the_durability_rules_catch_a_missing_fsync() -> None:
    good = [
        "flock .lock",
        "open .staging/x/metadata.json wb",
        "write .staging/x/metadata.json 10",
        "fsync .staging/x/metadata.json",
        "fsync .staging/x",
        "rename .staging/x -> v1",
        "fsync .",
    ]
    assert durability_problems(good) == []
    assert durability_problems([s for s in good if s != "fsync ."]) != []
    assert durability_problems([s for s in good if s != "fsync .staging/x"]) != []
    assert durability_problems([s for s in good if s != "flock .lock"]) != []


# -- two processes promoting at once -------------------------------------------------------


def _reader(backend: Backend, known: list[str], stop: Any, results: Any) -> None:
    """Reads the alias as fast as it can until told to stop: every read must parse and name
    complete versions."""
    registry = backend.open()
    reads, seen, errors = 0, set(), []
    while not stop.is_set():
        try:
            state = registry.production()
            if state.version not in known or not set(state.history) <= set(known):
                errors.append(f"read {state}")
            seen.add(state.version)
        except Exception as exc:
            errors.append(repr(exc))
        reads += 1
    results.put((reads, sorted(seen), errors[:5], len(errors)))


@pytest.fixture
def promoters(backend: Backend) -> Iterator[tuple[ModelRegistry, list[Any], Any]]:
    """A registry of six versions (v1 in production), two promoter processes waiting for
    orders, and a reader process (on each storage: see ``conftest.py``)."""
    registry = backend.open()
    for i in range(6):
        registry.save_version(tiny_model(i), {"i": i})
    registry.promote("v1")
    known = [f"v{i}" for i in range(1, 7)]
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    stop = context.Event()
    results = context.Queue()
    pipes, processes = [], []
    for _ in range(2):
        ours, theirs = context.Pipe()
        process = context.Process(target=promote_on_command, args=(backend, theirs, barrier))
        process.start()
        pipes.append(ours)
        processes.append(process)
    reader = context.Process(target=_reader, args=(backend, known, stop, results))
    reader.start()
    try:
        yield registry, pipes, (stop, results)
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        stop.set()
        for process in [*processes, reader]:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


def _reply(pipe: Any, timeout: float = 60) -> tuple[Any, ...]:
    if not pipe.poll(timeout):
        pytest.fail(f"a promoter did not answer within {timeout} s")
    reply = pipe.recv()
    assert reply[0] == "ok", reply
    return tuple(reply)


def test_two_processes_promoting_at_once_leave_one_winner_and_a_consistent_history(
    promoters: tuple[ModelRegistry, list[Any], Any],
) -> None:
    """What is checked, each round (two different versions, neither in production, promoted
    at once from the state ``old``):

    - the alias ends on one of the two (the *second*, the other being the *first*);
    - the first promotion returned ``(first, old.history + [old.version])``, and the second
      returned exactly the final state, so each saw the state the other left: none was lost;
    - the final history is ``old.history + [old.version, first]`` (bounded to HISTORY_LIMIT):
      each promotion recorded once, in the order they took effect;
    - the second promotion's ``updated_at`` is not before the first's.

    And over all rounds: the final history is the tail of every version that served, in the
    order they served (the starting one, then each round's first and second, bar the last);
    a reader polling the alias throughout never read a torn or unknown state.
    """
    registry, (left, right), (stop, results) = promoters
    rng = random.Random(20240611)
    rounds, overlapped = 100, 0
    served = ["v1"]
    old = registry.production()
    versions = [info.version for info in registry.list_versions()]
    for _ in range(rounds):
        a, b = rng.sample([v for v in versions if v != old.version], 2)
        left.send((a, 0.0))
        right.send((b, 0.0))
        reply_a, reply_b = _reply(left), _reply(right)
        final = registry.production()

        assert final.version in {a, b}
        second, first = (reply_a, reply_b) if final.version == a else (reply_b, reply_a)
        first_version, first_state = first[1], first[2]
        expected_first = _promoted(old, first_version)
        assert (first_state[0], first_state[1]) == expected_first, (old, first, second)
        assert second[2] == (final.version, final.history, final.updated_at), (first, second)
        assert final.history == [*old.history, old.version, first_version][-HISTORY_LIMIT:]
        assert datetime.fromisoformat(first_state[2]) <= datetime.fromisoformat(second[2][2])
        overlapped += max(first[3], second[3]) < min(first[4], second[4])
        served += [first_version, final.version]
        old = final

    assert old.history == served[:-1][-HISTORY_LIMIT:]
    stop.set()
    reads, seen, errors, error_count = results.get(timeout=30)
    print(
        f"\nconcurrent promotions: {rounds} rounds of 2 processes, {overlapped} overlapping in "
        f"time, {2 * rounds} promotions each recorded once; alias ends on {old.version}; "
        f"a reader read the alias {reads} times ({len(seen)} versions seen), {error_count} bad"
    )
    assert error_count == 0, errors
    assert reads > 0
