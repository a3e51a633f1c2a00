"""docker-compose.yml through a real validator: Debian's docker-compose 1.29 (``config`` needs no
engine). The file must also stay valid for Compose v2, so it uses no key newer than 1.29 knows."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    APP_SERVICES,
    COMPOSE_FILE,
    docker_compose,
    interpolate,
    load_compose,
)

pytestmark = [pytest.mark.deploy, pytest.mark.external]


def compose_config(
    *args: str, file: Path = COMPOSE_FILE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with a clean environment and no .env file, so a developer's
    own settings never change the outcome."""
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty_env_file:
        return subprocess.run(
            [docker_compose(), "--env-file", empty_env_file.name, "-f", str(file), *args],
            cwd=file.parent,
            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def test_the_compose_file_is_valid() -> None:
    result = compose_config("config", "-q")
    assert result.returncode == 0, result.stderr


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    """The validator can say no: the same file with an unknown start condition."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text().replace("condition: service_healthy", "condition: whenever", 1)
    broken.write_text(text)
    result = compose_config("config", "-q", file=broken)
    assert result.returncode != 0
    assert "condition" in result.stderr


def test_monitoring_services_are_in_the_monitoring_profile_only() -> None:
    """As docker-compose understood the file (1.29 lists profiled services in --services, so
    the parsed ``profiles`` key is what shows it)."""
    result = compose_config("--profile", "monitoring", "config")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    profiled = sorted(name for name, service in resolved.items() if "profiles" in service)
    assert profiled == ["flower", "grafana", "prometheus"]
    assert all(resolved[name]["profiles"] == ["monitoring"] for name in profiled)


@pytest.mark.parametrize("shell_env", [{}, {"LOG_LEVEL": "DEBUG", "API_KEY": "s3cret"}])
def test_compose_resolves_the_environment_as_the_local_launch_does(
    shell_env: dict[str, str], tmp_path: Path
) -> None:
    """tests/deploy/test_compose_stack.py runs the services with variables resolved by
    :func:`interpolate`: it must agree with docker-compose itself."""
    result = compose_config("config", env=shell_env)
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    raw = load_compose()["services"]
    for name in APP_SERVICES:
        ours = {
            key: interpolate(str(value), shell_env)
            for key, value in raw[name]["environment"].items()
        }
        theirs = {key: str(value) for key, value in resolved[name]["environment"].items()}
        assert theirs == ours, name
        assert resolved[name]["command"] == raw[name]["command"], name
    if shell_env:
        assert resolved["api"]["environment"]["API_KEY"] == "s3cret"
