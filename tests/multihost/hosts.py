"""Hosts for the multi-host test: Linux network namespaces this test makes, wired by bridges it
makes, with addresses it picks; nothing is routed to or from the machine's own network.

Two networks, as a deployment would have: a *front* one (where clients reach the API servers)
and a *back* one (where the servers, the trainer and the store talk). A server host sits on
both, so cutting its back link isolates it from the store while the test can still ask it how
it is doing through the front. Each bridge lives in a namespace of its own (the "switch"), so
the root namespace holds no interface of the test's after the veth ends are moved.

The test itself runs in the root namespace; to talk to the hosts it uses a *client* host on the
front network, through :meth:`Network.client_thread`: a thread that joined the client's
namespace (``setns`` applies to the calling thread only), so the sockets it opens are there.
Processes on a host are started with ``ip netns exec`` in a process group of their own and are
ended by that group, never by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/var/run/netns")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


def namespaces_available() -> str | None:
    """None if this process can make network namespaces, else why not."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"rvtprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, FileNotFoundError) as exc:
        return f"cannot make a network namespace: {exc}"
    _ip("netns", "del", probe)
    return None


@dataclass
class HostProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Host:
    """One namespace: its name, its address on each network, its private folder."""

    name: str
    netns: str
    addresses: dict[str, str]
    home: Path
    processes: list[HostProcess] = field(default_factory=list)

    @property
    def address(self) -> str:
        """Its address on the back network if it has one (where the services talk), else front."""
        return self.addresses.get("back") or self.addresses["front"]

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> HostProcess:
        """Run ``command`` on this host, with ``env`` on top of a minimal environment (so no
        setting of the test's own process leaks in) and this host's folder as HOME and TMPDIR."""
        log_path = self.home / f"{name}.log"
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "PYTHONUNBUFFERED": "1",
            "LANG": "C.UTF-8",
        }
        (self.home / "tmp").mkdir(exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *command],
                env={**base, **env},
                cwd=cwd or self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = HostProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    def link(self, network: str, up: bool) -> None:
        """Take this host's link to ``network`` down or up again."""
        _ip("-n", self.netns, "link", "set", _interface(network), "up" if up else "down")


def _interface(network: str) -> str:
    return {"front": "eth0", "back": "eth1"}[network]


class Network:
    """``with Network(root) as net: net.add_host("store", back=True)`` ...; everything made is
    removed on exit (processes stopped by group, namespaces deleted, which deletes their links)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tag = f"rvt{secrets.token_hex(3)}"
        # 10.X.Y.0/24 with X, Y random: the namespaces have no route anywhere else anyway
        self._prefix = {
            "front": f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}",
            "back": f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}",
        }
        while self._prefix["back"] == self._prefix["front"]:
            self._prefix["back"] = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
        self._switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._next = 1

    def __enter__(self) -> Network:
        self._add_namespace(self._switch)
        for network in ("front", "back"):
            _ip("-n", self._switch, "link", "add", f"br-{network}", "type", "bridge")
            _ip("-n", self._switch, "link", "set", f"br-{network}", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str, front: bool = False, back: bool = False) -> Host:
        number = self._next
        self._next += 1
        netns = f"{self.tag}-{name}"
        self._add_namespace(netns)
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        addresses: dict[str, str] = {}
        for network, wanted in (("front", front), ("back", back)):
            if not wanted:
                continue
            outside = f"{self.tag[-6:]}{number}{network[0]}"  # <= 15 characters
            inside = f"{outside}i"
            _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            _ip("link", "set", inside, "netns", netns)
            _ip("link", "set", outside, "netns", self._switch)
            _ip("-n", netns, "link", "set", inside, "name", _interface(network))
            address = f"{self._prefix[network]}.{number}"
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", _interface(network))
            _ip("-n", netns, "link", "set", _interface(network), "up")
            _ip("-n", self._switch, "link", "set", outside, "master", f"br-{network}")
            _ip("-n", self._switch, "link", "set", outside, "up")
            addresses[network] = address
        host = Host(name, netns, addresses, home)
        self.hosts[name] = host
        return host

    @contextlib.contextmanager
    def client_thread(self, host: Host) -> Iterator[Callable[[Callable[..., T]], T]]:
        """``call(fn)`` runs ``fn()`` in a thread inside ``host``'s namespace and returns its
        result: sockets opened there belong to that namespace."""
        fd = os.open(_NETNS_DIR / host.netns, os.O_RDONLY)
        libc = ctypes.CDLL(None, use_errno=True)

        def join() -> None:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"setns into {host.netns}: {os.strerror(error)}")

        pool = ThreadPoolExecutor(1, thread_name_prefix=f"in-{host.name}", initializer=join)
        try:

            def call(fn: Callable[..., T], *args: Any) -> T:
                return pool.submit(fn, *args).result()

            yield call
        finally:
            pool.shutdown(wait=True)
            os.close(fd)

    def close(self) -> None:
        for host in self.hosts.values():
            for process in reversed(host.processes):
                process.stop(timeout=5)
        for name in reversed(self._namespaces):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", name)
        self._namespaces.clear()
