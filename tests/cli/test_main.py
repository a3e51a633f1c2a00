"""The `rvt` command as users and scripts drive it: a real process, real files. Where a test
only needs the command's own view of things (``models list``), or goes down a path another test
here already takes as a real process, the command runs in the test's process instead
(:mod:`tests.cli.inprocess`): a real ``rvt`` process spends seconds importing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.inprocess import rvt_here
from tests.conftest import MakeDataset

RVT = str(Path(sys.executable).parent / "rvt")


def _env(env_dirs: Path) -> dict[str, str]:
    return {
        "MODELS_DIR": str(env_dirs / "models"),
        "DATA_DIR": str(env_dirs / "data"),
        "DEFAULT_DATASET_ROWS": "5000",
    }


def run(*args: str, env_dirs: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **_env(env_dirs)}
    result = subprocess.run(
        [RVT, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_train_json_prints_only_the_metadata(tmp_path: Path, make_dataset: MakeDataset) -> None:
    data = make_dataset(20_000, 7)
    result = run("train", "--data", str(data), "--json", env_dirs=tmp_path)
    metadata = json.loads(result.stdout)
    assert metadata["version"] == "v1"
    assert metadata["dataset"]["name"] == data.name
    assert metadata["metrics"]["roc_auc"] > 0.8
    assert metadata["gate"]["passed"] is True
    saved = json.loads((tmp_path / "models" / "v1" / "metadata.json").read_text())
    assert saved == metadata
    listing = json.loads(run("models", "list", "--json", env_dirs=tmp_path).stdout)
    assert listing["production"] == "v1"
    assert [v["version"] for v in listing["versions"]] == ["v1"]


def test_gate_failure_still_exits_zero(tmp_path: Path, make_dataset: MakeDataset) -> None:
    data = make_dataset(20_000, 7)
    result = run(
        "train", "--data", str(data), "--json", "--min-roc-auc", "0.9999", env_dirs=tmp_path
    )
    metadata = json.loads(result.stdout)
    assert metadata["gate"]["passed"] is False
    assert _production(tmp_path) is None


def test_human_summary_and_default_dataset(tmp_path: Path) -> None:
    result = run("train", "--class-weight", "balanced", env_dirs=tmp_path)
    assert "held-out metrics" in result.stdout and "roc_auc" in result.stdout
    assert "time per stage" in result.stdout
    assert "v1 is now production" in result.stdout
    # the default dataset was generated on first use, in DATA_DIR
    assert (tmp_path / "data" / "synthetic_default.csv").is_file()
    # no progress bar when stderr is not a terminal
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a CSV"),
        (b"sex,age_group\nMale,80+ Years\n", "required columns missing"),
    ],
)
def test_unusable_input_is_one_line_and_nonzero(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """In this process: a file refused as a real process is tests/cli/test_train_bad_files.py's."""
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    result = rvt_here(["train", "--data", str(bad), "--json"], _env(tmp_path))
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").glob("v*"))


def test_missing_file_and_bad_option(tmp_path: Path) -> None:
    result = run("train", "--data", str(tmp_path / "nope.csv"), env_dirs=tmp_path, check=False)
    assert result.returncode != 0 and "not found" in result.stderr
    result = run("train", "--C", "-1", env_dirs=tmp_path, check=False)
    assert result.returncode != 0 and "C must be greater than 0" in result.stderr


def _production(env_dirs: Path) -> str | None:
    """Production as ``rvt models list --json`` reports it (run in this process: as a real
    process it is test_train_json_prints_only_the_metadata's)."""
    listed = rvt_here(["models", "list", "--json"], _env(env_dirs))
    assert listed.exit_code == 0, listed.stderr
    production = json.loads(listed.stdout)["production"]
    return None if production is None else str(production)


def test_promote_rollback_and_show(tmp_path: Path, make_dataset: MakeDataset) -> None:
    """The versions are trained in this process (``rvt train`` as a real process is the tests'
    above); promote, rollback and show run as real processes."""
    data = make_dataset(20_000, 7)
    for extra in ([], ["--C", "0.1"]):
        made = rvt_here(["train", "--data", str(data), "--json", *extra], _env(tmp_path))
        assert made.exit_code == 0, made.stderr
    assert _production(tmp_path) == "v2"
    run("models", "promote", "v1", env_dirs=tmp_path)
    assert _production(tmp_path) == "v1"
    run("models", "rollback", env_dirs=tmp_path)
    assert _production(tmp_path) == "v2"
    shown = json.loads(run("models", "show", "v1", env_dirs=tmp_path).stdout)
    assert shown["params"]["C"] == 1.0
    missing = run("models", "promote", "../v1", env_dirs=tmp_path, check=False)
    assert missing.returncode != 0 and "v1" in missing.stderr


def test_data_generate_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    run("data", "generate", "--rows", "3000", "--seed", "5", "--out", str(a), env_dirs=tmp_path)
    run("data", "generate", "--rows", "3000", "--seed", "5", "--out", str(b), env_dirs=tmp_path)
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_text().splitlines()) == 3001
