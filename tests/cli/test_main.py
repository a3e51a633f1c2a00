"""The `rvt` command as users and scripts drive it: a real process, real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MakeDataset

RVT = str(Path(sys.executable).parent / "rvt")


def run(*args: str, env_dirs: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MODELS_DIR": str(env_dirs / "models"),
        "DATA_DIR": str(env_dirs / "data"),
        "DEFAULT_DATASET_ROWS": "5000",
    }
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
    listing = json.loads(run("models", "list", "--json", env_dirs=tmp_path).stdout)
    assert listing["production"] is None


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
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    result = run("train", "--data", str(bad), "--json", env_dirs=tmp_path, check=False)
    assert result.returncode != 0
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


def test_promote_rollback_and_show(tmp_path: Path, make_dataset: MakeDataset) -> None:
    data = make_dataset(20_000, 7)
    run("train", "--data", str(data), "--json", env_dirs=tmp_path)
    run("train", "--data", str(data), "--json", "--C", "0.1", env_dirs=tmp_path)
    assert (
        json.loads(run("models", "list", "--json", env_dirs=tmp_path).stdout)["production"] == "v2"
    )
    run("models", "promote", "v1", env_dirs=tmp_path)
    assert (
        json.loads(run("models", "list", "--json", env_dirs=tmp_path).stdout)["production"] == "v1"
    )
    run("models", "rollback", env_dirs=tmp_path)
    assert (
        json.loads(run("models", "list", "--json", env_dirs=tmp_path).stdout)["production"] == "v2"
    )
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
