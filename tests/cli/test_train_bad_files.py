"""`rvt train --data FILE` against the corpus of bad files (``tests/shared/data/test_bad_files.py``),
as a real process: a refused kind is one line on stderr (the loader's message), exit code 2,
nothing on stdout and nothing written; an accepted kind trains and registers v1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.shared.data.test_bad_files import (
    ACCEPTED,
    CORPUS,
    REFUSED,
    Kind,
    base_csv,
    facts_of,
    loader_message,
)

RVT = str(Path(sys.executable).parent / "rvt")


def _train(data: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELS_DIR": str(home / "models"), "DATA_DIR": str(home / "data")}
    return subprocess.run(
        [RVT, "train", "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def _written(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


def _check(kind: Kind, data: Path, home: Path) -> list[str]:
    result = _train(data, home)
    if kind.accepted:
        if result.returncode != 0:
            return [f"{kind.name}: exit {result.returncode}: {result.stderr}"]
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
    if result.returncode != 2 or result.stdout:
        problems.append(f"{kind.name}: exit {result.returncode}, stdout {result.stdout[:200]!r}")
    if lines != [expected]:
        problems.append(f"{kind.name}: stderr {result.stderr[:500]!r}, expected {expected!r}")
    # no model version, no dataset, no folder even: nothing written
    if _written(home):
        problems.append(f"{kind.name}: wrote {_written(home)}")
    return problems


def test_rvt_train_refuses_each_bad_file_in_one_line(tmp_path: Path) -> None:
    base = base_csv(tmp_path)
    runs = []
    for kind in CORPUS:
        data = tmp_path / "files" / f"{kind.name}.csv"
        data.parent.mkdir(exist_ok=True)
        data.write_bytes(kind.build(base))
        home = tmp_path / "homes" / kind.name
        home.mkdir(parents=True)
        runs.append((kind, data, home))
    # Two at a time (each process mostly imports); the result does not depend on the order.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda run: _check(*run), runs))
    problems = [problem for result in results for problem in result]
    assert not problems, "\n".join(problems)
    print(f"bad files: {len(REFUSED)} kinds refused, {len(ACCEPTED)} accepted (rvt train)")
