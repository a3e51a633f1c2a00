"""Fault injection for the registry: run one registry operation in a forked child whose every
filesystem step is counted, and make it die with ``os._exit`` at a chosen step; and promoter
processes that promote at the same moment (:func:`promote_on_command`).

A *step* is each call the registry module makes that reaches the file system: ``open`` (and
each ``write`` to a file it opened for writing), ``os.open``, ``os.fsync``, ``os.rename``,
``os.replace``, ``os.utime``, ``os.unlink``, ``fcntl.flock``, ``shutil.rmtree`` and
``Path.mkdir``. The child reports the label of each step on a pipe *before* taking it, and a
crash at step ``k`` exits before step ``k`` runs, except for a write, which is torn: half of its
bytes reach the file first. So the labels of the steps that ran are the reported labels minus
the last (see :attr:`Crash.executed`).

The hooks are installed only in the forked child (a copy of the test process), so nothing in
the test process itself is ever patched.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import time
import traceback
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.registry.versions import ModelRegistry
from shared.storage import local as registry_module
from shared.storage.s3 import ObjectStore
from tests.shared.registry.backends import Backend

#: The exit status of a child that died at its crash step.
CRASH_EXIT = 86
#: The exit status of a child whose operation raised (its traceback is reported).
ERROR_EXIT = 87
_ERROR_MARK = "\x00error\x00"


@dataclass(frozen=True)
class Crash:
    """What one child did: its exit status and the steps it started, in order."""

    exit_code: int
    steps: list[str]
    error: str

    @property
    def crashed(self) -> bool:
        return self.exit_code == CRASH_EXIT

    @property
    def executed(self) -> list[str]:
        """The steps that took effect: all of them, but the crash step (a torn write excepted,
        whose first half did reach the file)."""
        if not self.crashed:
            return list(self.steps)
        return self.steps if self.steps and self.steps[-1].startswith("write") else self.steps[:-1]


class _Steps:
    def __init__(self, root: Path, crash_at: int | None, report: int) -> None:
        self.root = str(root)
        self.crash_at = crash_at
        self.report = report
        self.count = 0
        self.paths: dict[int, str] = {}

    def name(self, path: Any) -> str:
        text = os.fsdecode(path)
        if text == self.root:
            return "."
        if text.startswith(self.root + os.sep):
            return text[len(self.root) + 1 :]
        return text

    def step(self, label: str, torn: Callable[[], None] | None = None) -> None:
        self.count += 1
        os.write(self.report, (label + "\n").encode())
        if self.count == self.crash_at:
            if torn is not None:
                torn()
            os._exit(CRASH_EXIT)


class _WriteFile:
    """A file opened for writing by the registry: each ``write`` is a step, torn at a crash."""

    def __init__(self, file: Any, steps: _Steps, label: str) -> None:
        self._file = file
        self._steps = steps
        self._label = label

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")

        def torn() -> None:
            self._file.write(view[: len(view) // 2])
            self._file.flush()

        self._steps.step(f"write {self._label} {len(view)}", torn)
        return int(self._file.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _WriteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


class _Os:
    """``os`` as the registry module sees it: the steps counted, everything else passed on."""

    def __init__(self, steps: _Steps) -> None:
        self._steps = steps

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def open(self, path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        self._steps.step(f"os.open {self._steps.name(path)}")
        fd = os.open(path, flags, mode, **kwargs)
        self._steps.paths[fd] = self._steps.name(path)
        return fd

    def fsync(self, fd: int) -> None:
        self._steps.step(f"fsync {self._steps.paths.get(fd, fd)}")
        os.fsync(fd)

    def rename(self, src: Any, dst: Any) -> None:
        self._steps.step(f"rename {self._steps.name(src)} -> {self._steps.name(dst)}")
        os.rename(src, dst)

    def replace(self, src: Any, dst: Any) -> None:
        self._steps.step(f"replace {self._steps.name(src)} -> {self._steps.name(dst)}")
        os.replace(src, dst)

    def utime(self, path: Any, *args: Any, **kwargs: Any) -> None:
        self._steps.step(f"utime {self._steps.name(path)}")
        os.utime(path, *args, **kwargs)

    def unlink(self, path: Any, *args: Any, **kwargs: Any) -> None:
        self._steps.step(f"unlink {self._steps.name(path)}")
        os.unlink(path, *args, **kwargs)


class _Fcntl:
    def __init__(self, steps: _Steps) -> None:
        self._steps = steps

    def __getattr__(self, name: str) -> Any:
        return getattr(fcntl, name)

    def flock(self, fd: int, operation: int) -> None:
        self._steps.step(f"flock {self._steps.paths.get(fd, fd)}")
        fcntl.flock(fd, operation)


class _Shutil:
    def __init__(self, steps: _Steps) -> None:
        self._steps = steps

    def __getattr__(self, name: str) -> Any:
        return getattr(shutil, name)

    def rmtree(self, path: Any, *args: Any, **kwargs: Any) -> None:
        self._steps.step(f"rmtree {self._steps.name(path)}")
        shutil.rmtree(path, *args, **kwargs)


def _install(steps: _Steps) -> None:
    """Only ever called in a forked child."""

    def counted_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        label = f"{steps.name(file)} {mode}"
        steps.step(f"open {label}")
        f = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 (the caller closes it)
        steps.paths[f.fileno()] = steps.name(file)
        if any(flag in mode for flag in "wax+"):
            return _WriteFile(f, steps, steps.name(file))
        return f

    real_mkdir = pathlib.Path.mkdir

    def counted_mkdir(self: pathlib.Path, *args: Any, **kwargs: Any) -> None:
        steps.step(f"mkdir {steps.name(self)}")
        real_mkdir(self, *args, **kwargs)

    registry_module.open = counted_open  # type: ignore[attr-defined]
    registry_module.os = _Os(steps)  # type: ignore[assignment]
    registry_module.fcntl = _Fcntl(steps)  # type: ignore[assignment]
    registry_module.shutil = _Shutil(steps)  # type: ignore[assignment]
    pathlib.Path.mkdir = counted_mkdir  # type: ignore[method-assign]


def _install_s3(steps: _Steps) -> None:
    """Each request the object store layer makes is a step (only ever in a forked child). A
    request is atomic on the server: a crash comes before it, never in its middle."""
    for method in ("get", "head", "put", "list", "delete"):
        real = getattr(ObjectStore, method)

        def counted(self: ObjectStore, *args: Any, _real: Any = real, _m: str = method, **kw: Any):
            target = args[0] if args else kw.get("under", "")
            condition = " if-absent" if kw.get("if_absent") else ""
            condition += " if-match" if kw.get("if_match") else ""
            steps.step(f"{_m} {target}{condition}")
            return _real(self, *args, **kw)

        setattr(ObjectStore, method, counted)


def run_request_crash(
    backend: Backend, operation: Callable[[ModelRegistry], object], crash_at: int | None
) -> Crash:
    """:func:`run_step_crash` for a registry in an object store: the child dies before its
    ``crash_at``-th request."""
    return _run_in_child(
        lambda report: _install_s3(_Steps(Path("/"), crash_at, report)), backend.open, operation
    )


def run_step_crash(
    root: Path, operation: Callable[[ModelRegistry], object], crash_at: int | None
) -> Crash:
    """Run ``operation`` on the registry at ``root`` in a forked child that dies before its
    ``crash_at``-th step (never, if None), and report what it did."""
    return _run_in_child(
        lambda report: _install(_Steps(root, crash_at, report)),
        lambda: ModelRegistry(root),
        operation,
    )


def _run_in_child(
    install: Callable[[int], None],
    open_registry: Callable[[], ModelRegistry],
    operation: Callable[[ModelRegistry], object],
) -> Crash:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test process's code
        code = 0
        try:
            os.close(read_end)
            install(write_end)
            operation(open_registry())
        except BaseException:
            code = ERROR_EXIT
            with contextlib.suppress(BaseException):
                os.write(write_end, (_ERROR_MARK + traceback.format_exc()).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    text, _, error = text.partition(_ERROR_MARK)
    return Crash(os.waitstatus_to_exitcode(status), text.splitlines(), error)


def promote_on_command(
    root: str | Backend, orders: Any, barrier: Any, base_url: str | None = None
) -> None:
    """A promoter process: for each ``(version, delay)`` received on ``orders``, wait at the
    barrier with the other promoters, sleep ``delay`` seconds, promote, and answer
    ``("ok", version, (production, history, updated_at), started, ended)`` (monotonic clock,
    which every process of the machine shares) or ``("error", version, message)``.

    With ``base_url`` the promotion goes through the API (``POST /models/{v}/promote``, which
    does not return ``updated_at``: None); else through the registry, in this process."""
    registry = root.open() if isinstance(root, Backend) else ModelRegistry(Path(root))
    while (order := orders.recv()) is not None:
        version, delay = order
        barrier.wait(timeout=60)
        time.sleep(delay)
        started = time.monotonic()
        try:
            if base_url is None:
                state = registry.promote(version)
                reply = (state.version, state.history, state.updated_at)
            else:
                request = urllib.request.Request(
                    f"{base_url}/models/{version}/promote",
                    data=b'{"force": false}',
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    body = json.loads(response.read())
                reply = (body["production"], body["history"], None)
        except Exception as exc:
            orders.send(("error", version, repr(exc)))
            continue
        orders.send(("ok", version, reply, started, time.monotonic()))
