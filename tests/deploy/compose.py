"""A docker-compose project of docker-compose.yml on a real engine, under a name of its own.

Debian's ``docker-compose`` 1.29 talks to the engine at ``DOCKER_HOST``. It reads no ``.env``
of the developer (an empty env file instead) and only the environment given here, so a
developer's own settings never change what a test runs; the test's settings come in an
override file.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import COMPOSE_FILE
from tests.deploy.engine import Engine

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


@dataclass
class ComposeProject:
    engine: Engine
    compose: str
    name: str
    workdir: Path
    #: Shell variables compose interpolates (the published ports).
    variables: dict[str, str]
    #: Per service, settings added to its environment by the override file.
    settings: dict[str, dict[str, str]]
    #: Host ports published on loopback, by what they publish (API, PROMETHEUS, ...).
    ports: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    down_done: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['API']}"

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env_file = self.workdir / "empty.env"
        self.env_file.write_text("")
        self.override = self.workdir / "docker-compose.test.yml"
        services = {name: {"environment": env} for name, env in self.settings.items()}
        self.override.write_text(yaml.safe_dump({"version": "3.8", "services": services}))

    def run(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [
            self.compose,
            "--env-file",
            str(self.env_file),
            "-p",
            self.name,
            "-f",
            str(COMPOSE_FILE),
            "-f",
            str(self.override),
            *args,
        ]
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/"),
            "DOCKER_HOST": self.engine.host,
            **self.variables,
        }
        result = subprocess.run(
            command,
            cwd=COMPOSE_FILE.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker-compose {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
            )
        return result

    def timed(
        self, step: str, *args: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = self.run(*args, timeout=timeout)
        self.timings[step] = time.monotonic() - started
        return result

    def containers(self, service: str | None = None, *, all_states: bool = False) -> list[str]:
        """Ids of the project's containers (of one service), running ones unless ``all_states``."""
        filters = ["--filter", f"label={PROJECT_LABEL}={self.name}"]
        if service is not None:
            filters += ["--filter", f"label={SERVICE_LABEL}={service}"]
        result = self.engine.run("ps", "-q", *(["-a"] if all_states else []), *filters)
        return result.stdout.split()

    def one(self, service: str) -> str:
        ids = self.containers(service)
        assert len(ids) == 1, f"{service}: {len(ids)} containers running"
        return ids[0]

    def inspect(self, target: str, kind: str = "container") -> dict[str, Any]:
        data = json.loads(self.engine.run(kind, "inspect", target).stdout)
        assert isinstance(data, list) and len(data) == 1
        return dict(data[0])

    def logs(self, container: str) -> str:
        result = self.engine.run("logs", container, check=False)
        return result.stdout + result.stderr

    def leftovers(self) -> dict[str, list[str]]:
        """The project's containers (any state), volumes and networks that still exist."""
        label = f"label={PROJECT_LABEL}={self.name}"
        return {
            "containers": self.containers(all_states=True),
            "volumes": self.engine.run("volume", "ls", "-q", "--filter", label).stdout.split(),
            "networks": self.engine.run("network", "ls", "-q", "--filter", label).stdout.split(),
        }

    def down(self) -> None:
        if not self.down_done:
            self.timed(
                "docker-compose down -v",
                *("--profile", "monitoring", "down", "-v", "--remove-orphans", "-t", "30"),
            )
            self.down_done = True
