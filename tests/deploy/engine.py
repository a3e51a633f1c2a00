"""A Docker engine for the tests that run containers: the one already running, or a ``dockerd``
of our own, started here and stopped by its pid when the tests are done.

Debian's ``docker.io`` (dockerd 20.10) runs as root on this kind of machine but cannot pull
images (no registry of images is reachable): :mod:`tests.deploy.standin` builds the images the
compose file names. Our own daemon listens on a private socket (``DOCKER_HOST`` points the CLI
and ``docker-compose`` at it) but keeps the default data root, so images built once are reused
by the next run.

Two daemons must not share one data root, so starting ours takes a machine-wide lock
(:data:`LOCK_PATH`) that is held until it stops: a second user (``.ci/run`` builds the stand-in
images in the background while lint and the first tests run, and the compose test then needs
the engine) waits for the first instead of failing.
"""

from __future__ import annotations

import fcntl
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
#: Held by whoever runs a daemon of our own (see the module's docstring).
LOCK_PATH = Path(tempfile.gettempdir()) / "rvt-dockerd.lock"
#: How long to wait for another user's daemon to stop: a cold build of every stand-in image.
LOCK_TIMEOUT_SECONDS = 1200.0


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
    #: The open lock file while our daemon runs (closing it releases the lock).
    lock: int | None = None

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
        try:
            self._stop_daemon()
        finally:
            if self.lock is not None:
                os.close(self.lock)
                self.lock = None

    def _stop_daemon(self) -> None:
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


def _take_lock(timeout: float = LOCK_TIMEOUT_SECONDS) -> tuple[int, float]:
    """The lock of :data:`LOCK_PATH` (its descriptor), and how long we waited for it."""
    lock = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock, time.monotonic() - started
        except BlockingIOError:
            if time.monotonic() - started > timeout:
                os.close(lock)
                raise EngineUnavailable(
                    f"another process has held {LOCK_PATH} for over {timeout:.0f} s "
                    "(a daemon of ours that never stopped?)"
                ) from None
            time.sleep(1.0)


def find_or_start() -> Engine:
    """The engine at ``DOCKER_HOST`` (or the default socket) if one answers, else a daemon of
    our own, once no other one of ours runs. Raises :class:`EngineUnavailable` with the
    reason."""
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
    lock, waited = _take_lock()
    try:
        engine = _start_daemon(docker, dockerd)
    except BaseException:
        os.close(lock)
        raise
    engine.lock = lock
    engine.timings["waiting for another daemon of ours"] = waited
    return engine


def _start_daemon(docker: str, dockerd: str) -> Engine:
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
