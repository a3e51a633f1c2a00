"""A Docker engine for the tests that run containers: the one already running, or a ``dockerd``
of our own, started here and stopped by its pid when the tests are done.

Debian's ``docker.io`` (dockerd 20.10) runs as root on this kind of machine but cannot pull
images (no registry of images is reachable): :mod:`tests.deploy.standin` builds the images the
compose file names. Our own daemon listens on a private socket (``DOCKER_HOST`` points the CLI
and ``docker-compose`` at it) but keeps the default data root, so images built once are reused
by the next run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Debian's client first: it matches Debian's daemon (another client may be older or newer).
DOCKER_CLIENTS = ("/usr/bin/docker",)
DOCKERD_CANDIDATES = ("/usr/sbin/dockerd", "/usr/bin/dockerd")
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0


class EngineUnavailable(RuntimeError):
    """No engine answers and none could be started; the message says why."""


@dataclass
class Engine:
    docker: str
    host: str
    #: The daemon we started (None when one was already running): the only one we stop.
    daemon: subprocess.Popen[bytes] | None = None
    state_dir: Path | None = None
    log_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, **extra}

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``; with ``check``, a failure raises with docker's own message."""
        result = subprocess.run(
            [self.docker, *args],
            env=self.env(),
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def answers(self) -> bool:
        try:
            return (
                self.run("version", "--format", "{{.Server.Version}}", timeout=20).returncode == 0
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the daemon we started (SIGTERM, then SIGKILL of its process group); never one
        we found running."""
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait(10)
        self.daemon = None
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def docker_client() -> str | None:
    for path in DOCKER_CLIENTS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("docker")


def find_or_start() -> Engine:
    """The engine at ``DOCKER_HOST`` (or the default socket) if one answers, else a daemon of
    our own. Raises :class:`EngineUnavailable` with the reason."""
    docker = docker_client()
    if docker is None:
        raise EngineUnavailable("no docker client (apt-get install docker.io; .ci/run does it)")
    existing = Engine(docker, os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    if existing.answers():
        return existing
    dockerd = next((p for p in DOCKERD_CANDIDATES if os.access(p, os.X_OK)), None)
    dockerd = dockerd or shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("no dockerd (apt-get install docker.io; .ci/run does it)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers, and only root can start dockerd here")
    # A short path: containerd's sockets live under the exec root, and socket paths are short.
    state = Path(tempfile.mkdtemp(prefix="rvt-dockerd-"))
    log_path = state / "dockerd.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [
                dockerd,
                "--host",
                f"unix://{state}/docker.sock",
                "--pidfile",
                str(state / "dockerd.pid"),
                "--exec-root",
                str(state / "exec"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    engine = Engine(docker, f"unix://{state}/docker.sock", daemon, state, log_path)
    deadline = started + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            tail = engine.log_tail()
            engine.stop()
            raise EngineUnavailable(f"dockerd exited with {daemon.returncode}:\n{tail}")
        if engine.answers():
            engine.timings["dockerd start"] = time.monotonic() - started
            return engine
        time.sleep(0.5)
    tail = engine.log_tail()
    engine.stop()
    raise EngineUnavailable(f"dockerd did not answer within {START_TIMEOUT_SECONDS:.0f} s:\n{tail}")
