"""`rvt train --data FILE` against the corpus of bad files (``tests/shared/data/test_bad_files.py``):
a refused kind is one line on stderr (the loader's message), exit code 2, nothing on stdout and
nothing written; an accepted kind trains and registers v1.

Every kind runs through the command in this process (:mod:`tests.cli.inprocess`); one kind per
path through ``rvt train`` also runs as a real process: refused from its first bytes, refused
part way through the read, accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cli.inprocess import Outcome, rvt_here, rvt_process
from tests.shared.data.test_bad_files import (
    ACCEPTED,
    CORPUS,
    REFUSED,
    Kind,
    base_csv,
    facts_of,
    loader_message,
)

#: The kinds also run as a real process: one per path through ``rvt train``.
REAL_PROCESS_KINDS = {"early_refusal": "empty", "late_refusal": "ragged_rows", "accepted": "crlf"}

Run = Callable[[list[str], dict[str, str]], Outcome]


def _train(run: Run, data: Path, home: Path) -> Outcome:
    env = {"MODELS_DIR": str(home / "models"), "DATA_DIR": str(home / "data")}
    return run(["train", "--data", str(data), "--json"], env)


def _written(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


def _check(kind: Kind, data: Path, home: Path, run: Run) -> list[str]:
    result = _train(run, data, home)
    if kind.accepted:
        if result.exit_code != 0:
            return [f"{kind.name}: exit {result.exit_code}: {result.stderr}"]
        metadata = json.loads(result.stdout)
        facts = facts_of(data.read_bytes())
        got = {
            "rows": metadata["rows"]["read"],
            "labelled": metadata["rows"]["labelled"],
            "invalid_values": metadata["invalid_values"],
        }
        problems = [] if got == facts else [f"{kind.name}: trained on {got}, expected {facts}"]
        if metadata["version"] != "v1" or not (home / "models" / "v1").is_dir():
            problems.append(f"{kind.name}: no v1 in the registry: {_written(home)}")
        return problems
    lines = result.stderr.splitlines()
    expected = "error: " + " ".join(loader_message(data).split())
    problems = []
    if result.exit_code != 2 or result.stdout:
        problems.append(f"{kind.name}: exit {result.exit_code}, stdout {result.stdout[:200]!r}")
    if lines != [expected]:
        problems.append(f"{kind.name}: stderr {result.stderr[:500]!r}, expected {expected!r}")
    # no model version, no dataset, no folder even: nothing written
    if _written(home):
        problems.append(f"{kind.name}: wrote {_written(home)}")
    return problems


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, tuple[Kind, Path]]:
    """Every kind's file, by kind name."""
    base = base_csv(tmp_path)
    files = tmp_path / "files"
    files.mkdir()
    made = {}
    for kind in CORPUS:
        data = files / f"{kind.name}.csv"
        data.write_bytes(kind.build(base))
        made[kind.name] = (kind, data)
    return made


def _home(tmp_path: Path, how: str, kind: Kind) -> Path:
    home = tmp_path / how / kind.name
    home.mkdir(parents=True)
    return home


def test_rvt_train_refuses_each_bad_file_in_one_line(
    tmp_path: Path, corpus: dict[str, tuple[Kind, Path]]
) -> None:
    problems = [
        problem
        for kind, data in corpus.values()
        for problem in _check(kind, data, _home(tmp_path, "here", kind), rvt_here)
    ]
    assert not problems, "\n".join(problems)
    print(f"bad files: {len(REFUSED)} kinds refused, {len(ACCEPTED)} accepted (rvt train)")


def test_a_real_rvt_process_per_path(tmp_path: Path, corpus: dict[str, tuple[Kind, Path]]) -> None:
    chosen = {path: corpus[name][0] for path, name in REAL_PROCESS_KINDS.items()}
    # each path is what its kind stands for here: if the corpus changes, pick again
    assert chosen["early_refusal"].early and not chosen["early_refusal"].accepted
    assert not chosen["late_refusal"].early and not chosen["late_refusal"].accepted
    assert chosen["accepted"].accepted
    runs = [(kind, corpus[kind.name][1], _home(tmp_path, "real", kind)) for kind in chosen.values()]

    def check(run: tuple[Kind, Path, Path]) -> list[str]:
        return _check(*run, rvt_process)

    # Two at a time (each process mostly imports); the result does not depend on the order.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check, runs))
    problems = [problem for result in results for problem in result]
    assert not problems, "\n".join(problems)
