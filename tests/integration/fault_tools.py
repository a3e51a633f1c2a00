"""Tools for the process-fault tests (:mod:`tests.integration.test_process_faults`): process
trees read from ``/proc``, a closed-loop prediction load on threads that times every request,
a private Redis that keeps an append-only file, and a look at the registry's folder.

Linux only, like the stack itself (``/proc``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# -- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    state: str  # "R", "S", ... "Z" for a zombie (dead, not yet reaped)
    ppid: int
    pgid: int


def proc(pid: int) -> Proc | None:
    """``/proc/<pid>/stat``, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name is in parentheses and may hold spaces or parentheses itself
    fields = raw[raw.rindex(")") + 2 :].split()
    return Proc(pid, fields[0], int(fields[1]), int(fields[2]))


def every_proc() -> list[Proc]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := proc(int(entry))) is not None:
            found.append(info)
    return found


def live_children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, zombies left out."""
    return sorted(p.pid for p in every_proc() if p.ppid == pid and p.state != "Z")


def live_group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` still running (a zombie runs nothing: it only
    waits to be reaped by whichever process adopted it)."""
    return sorted(p.pid for p in every_proc() if p.pgid == pgid and p.state != "Z")


# -- a prediction load --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One request as its client saw it (``time.monotonic`` seconds)."""

    start: float
    end: float
    status: int | None  # None: the client gave up or could not connect (see ``error``)
    error: str = ""

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class PredictionLoad:
    """``concurrency`` clients, each sending ``POST /predict`` in a closed loop (the next
    request when the last one is answered), every request timed from the client's side. A
    client gives up after ``client_timeout`` seconds (recorded as ``status=None``): a test
    asserts there are none, i.e. that nothing hangs."""

    base_url: str
    body: dict[str, Any]
    concurrency: int = 16
    client_timeout: float = 10.0
    #: A short pause after an answer other than 200, so that a burst of quick 503s does not
    #: take the CPU the service needs to recover.
    pause_after_failure: float = 0.01
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> PredictionLoad:
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._client, name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.client_timeout + 5)
        assert not any(t.is_alive() for t in self._threads), "a load client did not stop"
        return self.snapshot()

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def first(self, status: int, started_after: float) -> Sample | None:
        """The earliest-answered request with ``status`` that started after a moment."""
        found = [s for s in self.snapshot() if s.status == status and s.start >= started_after]
        return min(found, key=lambda s: s.end) if found else None

    def _client(self) -> None:
        # a connection of its own per client, kept alive, as a real client would
        timeout = httpx.Timeout(self.client_timeout)
        with httpx.Client(base_url=self.base_url, timeout=timeout) as http:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    response = http.post("/predict", json=self.body)
                    status, error = response.status_code, ""
                    if status != 200:
                        error = str(response.json().get("error", {}).get("message", ""))
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}"
                except ValueError as exc:  # a body that is not JSON
                    status, error = -1, f"unreadable body: {exc}"
                sample = Sample(start, time.monotonic(), status, error)
                with self._lock:
                    self.samples.append(sample)
                if status != 200:
                    time.sleep(self.pause_after_failure)


# -- Redis with persistence ---------------------------------------------------------------------


def persistent_redis_command(port: int, workdir: Path) -> list[str]:
    """A private redis-server like the stack's own (:func:`cli.stack.redis_command`), but
    keeping an append-only file fsynced on every write: what it acknowledged survives a
    SIGKILL, and it reloads it when started again in the same folder."""
    return [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir),
        "--loglevel", "warning",
    ]  # fmt: skip


# -- the registry's folder ----------------------------------------------------------------------

_VERSION = re.compile(r"v[1-9][0-9]*")
_STAGING_ENTRY = re.compile(r"[0-9a-f]{32}|production\.json\.tmp")


@dataclass(frozen=True)
class RegistryFolder:
    versions: list[str]  # complete versions: metadata and artifact, checksum matching
    staging: list[str]  # leftovers of writes in progress or killed, under .staging
    oldest_staging_age: float  # seconds, 0 when there are none


def inspect_registry_folder(root: Path) -> RegistryFolder:
    """List the registry's folder as a reader would find it, and fail on anything that is not
    a complete version, the alias, the lock, or a leftover inside ``.staging`` (where readers
    never look)."""
    versions: list[str] = []
    staging: list[str] = []
    oldest = 0.0
    if not root.exists():
        return RegistryFolder([], [], 0.0)
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in {"production.json", ".lock"}:
            continue
        if name == ".staging":
            for left in sorted(entry.iterdir()):
                assert _STAGING_ENTRY.fullmatch(left.name), f"unexpected in staging: {left}"
                staging.append(left.name)
                oldest = max(oldest, time.time() - left.lstat().st_mtime)
            continue
        assert _VERSION.fullmatch(name) and entry.is_dir(), f"not a version: {entry}"
        files = sorted(p.name for p in entry.iterdir())
        assert files == ["metadata.json", "model.joblib"], f"partial version {name}: {files}"
        metadata = json.loads((entry / "metadata.json").read_text())
        artifact = (entry / "model.joblib").read_bytes()
        assert metadata["version"] == name, (name, metadata["version"])
        assert metadata["artifact_bytes"] == len(artifact), f"truncated artifact in {name}"
        assert metadata["artifact_sha256"] == hashlib.sha256(artifact).hexdigest(), name
        versions.append(name)
    versions.sort(key=lambda v: int(v[1:]))
    return RegistryFolder(versions, staging, oldest)
