"""Helpers for checking the deployment files without a Docker engine.

External validators (Debian's ``docker-compose`` 1.29, ``promtool`` from Debian's
``prometheus`` package) are installed by ``.ci/run``. Without them these tests skip locally,
and fail when ``CI=true``, so CI cannot go green without running them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import refuse_without_services

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BIN = Path(sys.executable).parent
#: Where .ci/run extracts promtool (git-ignored).
PROMTOOL_CACHE = ROOT / ".cache" / "promtool" / "promtool"
#: Services whose image is built from this repository (the others are pulled).
APP_SERVICES = ("api", "worker-training", "worker-prediction")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def named_images() -> list[str]:
    """Every image the project's files name: the Dockerfile's base, then each service's
    image that is not built here, in the compose file's order."""
    bases = [
        line.split()[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.upper().startswith("FROM ")
    ]
    pulled = [
        service["image"]
        for service in load_compose()["services"].values()
        if "build" not in service
    ]
    return list(dict.fromkeys([*bases, *pulled]))


def require_tool(name: str, path: str | None, install: str) -> str:
    """The tool's path; without it, skip (fail when CI=true, where .ci/run installs it)."""
    refuse_without_services(name, "external")
    if path is not None:
        return path
    message = f"{name} is not installed ({install})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true: .ci/run must install it")
    pytest.skip(message)


def docker_compose() -> str:
    return require_tool(
        "docker-compose",
        shutil.which("docker-compose"),
        "apt-get install docker-compose; .ci/run does it",
    )


def promtool() -> str:
    found = str(PROMTOOL_CACHE) if os.access(PROMTOOL_CACHE, os.X_OK) else None
    return require_tool(
        "promtool",
        found or shutil.which("promtool"),
        "bash .ci/run extracts it from Debian's prometheus package into .cache/promtool",
    )


def check_metrics(text: str) -> subprocess.CompletedProcess[bytes]:
    """``promtool check metrics`` on a Prometheus exposition (exit code 0 when it is valid)."""
    return subprocess.run(
        [promtool(), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def variables(value: str) -> list[str]:
    """The names of the ``${NAME}`` / ``${NAME:-default}`` references in a compose value."""
    return [m.group("name") for m in _VARIABLE.finditer(value) if m.group("name")]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's substitution, as ``docker compose`` does it with ``env`` as the shell's
    environment (empty: every variable takes its default)."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        given = env.get(name)
        if given:
            return given
        return default if default is not None else ""

    return _VARIABLE.sub(replace, value)
