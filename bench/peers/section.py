"""The suite's ``peers`` section: our service and each peer measured alone, in one run.

Inside the suite's running stack (after ``service``): the peers' venvs are made ready (once),
every system is started in turn (the others stopped, our API idle), its probabilities for the
same records are checked against ``POST /predict``'s to 1e-12 (a difference stops the bench),
its idle memory is read, and the same wrk load runs at c=1 and c=16; then the whole round
again, so each system is measured twice, interleaved with the others. ``/predict`` and
``/healthz`` take part in the rounds, so every ratio comes from this run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import bodies
from bench.peers import stats, systems, venvs
from bench.peers.systems import SYSTEMS, System
from bench.procstat import process_stats
from cli.stack import LocalStack, ManagedProcess, free_port
from shared.registry.versions import ARTIFACT_NAME, ModelRegistry

if TYPE_CHECKING:
    from bench.suite import Bench

#: Largest difference allowed between a peer's probability and ours, for the same record.
TOLERANCE = 1e-12
#: Records checked on every system: the single-record body's own, and these varied ones.
CHECK_RECORDS = 24
ROUNDS = 2
CONCURRENCIES = (1, 16)
#: Seconds of each measured load (after the suite's warm-up): 28 of them, 7 systems x 2
#: concurrencies x 2 rounds; the peers' figures settle well within it.
DURATION_S = 5.0
#: Seconds a peer gets to start and load its model.
START_TIMEOUT_S = 180.0
#: Our serving path's processes, whose memory is ours: the API, the prediction worker, Redis.
OUR_PROCESSES = ("api", "worker-prediction", "redis")
REPORTED_VERSIONS = (
    "mlserver", "mlserver-sklearn", "bentoml", "uvloop", "fastapi", "uvicorn", "numpy",
    "pandas", "scikit-learn",
)  # fmt: skip
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def verified_artifact(models_dir: Path, version: str, dest: Path) -> str:
    """Copy ``version``'s model.joblib to ``dest`` if its sha256 is the one the registry's
    metadata records (the stock MLServer runtime unpickles this copy); the sha256."""
    info = ModelRegistry(models_dir).get(version)
    if info.path is None:
        raise RuntimeError("the peers section needs a registry in a local folder")
    data = (info.path / ARTIFACT_NAME).read_bytes()
    expected = info.metadata.get("artifact_sha256")
    actual = hashlib.sha256(data).hexdigest()
    if not expected or actual != expected:
        raise RuntimeError(
            f"{version}'s artifact does not match its metadata (sha256 {actual}, "
            f"recorded {expected}): not served"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return actual


def tree(roots: Iterable[int]) -> dict[int, list[str]]:
    """Every live process descending from ``roots`` (themselves included), with its stat
    fields. By parent, not process group: BentoML's worker leads a group of its own."""
    stats_by_pid = dict(process_stats())
    children: dict[int, list[int]] = {}
    for pid, fields in stats_by_pid.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found: dict[int, list[str]] = {}
    todo = [pid for pid in roots if pid in stats_by_pid]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = stats_by_pid[pid]
            todo += children.get(pid, [])
    return found


def memory_mib(roots: Iterable[int]) -> dict[str, float]:
    """RSS and PSS (MiB) summed over the process trees of ``roots``: a peer with its workers,
    or our serving path's processes. RSS counts shared pages in each process, PSS once."""
    rss = pss = 0.0
    processes = tree(roots)
    for pid, fields in processes.items():
        rss += int(fields[21]) * _PAGE
        with contextlib.suppress(OSError, ValueError, StopIteration):
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            pss += int(next(ln for ln in rollup if ln.startswith("Pss:")).split()[1]) * 1024
    return {
        "rss_mib": round(rss / 2**20, 1),
        "pss_mib": round(pss / 2**20, 1),
        "processes": len(processes),
    }


def cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU seconds of the live processes of the trees of ``roots``."""
    return sum((int(f[11]) + int(f[12])) / _TICKS for f in tree(roots).values())


def post_json(url: str, body: bytes, timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url} answered {exc.code}: {exc.read()[:500]!r}") from exc


def wait_ready(url: str, process: ManagedProcess, timeout: float = START_TIMEOUT_S) -> float:
    """Poll ``url`` until it answers 200 (the peer has loaded its model); the seconds it took.
    Fails at once if the peer's process exits, with the tail of its log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited while starting:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"{process.name} was not ready within {timeout:.0f} s:\n{process.log_tail()}"
    )


def stop_leftovers(started: dict[int, list[str]]) -> None:
    """SIGKILL whichever of a stopped peer's processes outlived it (the stack ends the peer's
    own process group; a worker leading another group is ended here). ``started`` is the
    peer's tree as :func:`tree` read it before the stop: a pid is killed only if it is still
    the same process (same start time), never a later process that reused the number."""
    now = dict(process_stats())
    for pid, fields in started.items():
        if pid in now and now[pid][19] == fields[19]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Section:
    """One run of the section, on the suite's running stack."""

    def __init__(self, bench: Bench) -> None:
        if bench.stack is None:
            raise RuntimeError("the peers section runs inside the suite's running stack")
        self.bench = bench
        self.stack: LocalStack = bench.stack
        self.work = bench.work / "peers"
        self.models = bench.work / "models"
        self.version = ModelRegistry(self.models).production_version() or "v1"
        #: the checksum-verified copy the stock MLServer runtime unpickles
        self.artifact = self.work / "artifact" / ARTIFACT_NAME
        self.records = bodies.records(1) + bodies.records(CHECK_RECORDS, seed=14)
        self.out: dict[str, Any] = {
            "version": self.version,
            "tolerance": TOLERANCE,
            "checked_records": len(self.records),
            "systems": [
                {"name": s.name, "title": s.title, "kind": s.kind, "framework": s.framework}
                for s in SYSTEMS
            ],
            "install": {},
            "starts": [],
            "checks": [],
            "runs": [],
        }

    def install(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        for framework in ("mlserver", "bentoml"):
            python, seconds = venvs.ensure(framework, log=self.work / f"install-{framework}.log")
            self.out["install"][framework] = {
                "seconds": round(seconds, 1),
                "reused": seconds == 0.0,
                "versions": venvs.installed_versions(python, REPORTED_VERSIONS),
            }

    @contextlib.contextmanager
    def serving(self, system: System, round_: int) -> Iterator[tuple[str, list[int]]]:
        """``system`` started alone: its base URL and the roots of its process trees."""
        if not system.peer:
            yield (
                self.bench.urls["api"],
                [self.stack.processes[name].popen.pid for name in OUR_PROCESSES],
            )
            return
        port = free_port()
        spec = systems.launch(
            system, self.work / system.name, port, (free_port(), free_port()),
            self.artifact, self.models, self.version,
        )  # fmt: skip
        name = f"peer-{system.name}"
        process = self.stack.launch(name, spec.command, env=spec.env)
        try:
            url = f"http://127.0.0.1:{port}"
            seconds = wait_ready(url + spec.ready_path, process)
            self.out["starts"].append(
                {"system": system.name, "round": round_, "seconds": round(seconds, 2)}
            )
            yield url, [process.popen.pid]
        finally:
            started = tree([process.popen.pid])
            process.stop()
            self.stack.processes.pop(name, None)
            stop_leftovers(started)

    def check(self, system: System, url: str, ours: list[float], round_: int) -> None:
        """``system``'s probabilities for the check records equal ours to TOLERANCE."""
        theirs = system.read(post_json(url + system.path, system.body(self.records)))
        difference = stats.max_difference(ours, theirs)
        self.out["checks"].append(
            {"system": system.name, "round": round_, "max_abs_difference": difference}
        )
        if difference > TOLERANCE:
            raise RuntimeError(
                f"{system.title} disagrees with POST /predict: a probability differs by "
                f"{difference:.3e} (> {TOLERANCE:g}) on the same records\n"
                f"ours:   {ours}\ntheirs: {theirs}"
            )

    def run(self) -> dict[str, Any]:
        self.install()
        self.out["artifact_sha256"] = verified_artifact(self.models, self.version, self.artifact)
        predict = systems.BY_NAME["predict"]
        ours = predict.read(
            post_json(self.bench.urls["api"] + "/predict", predict.body(self.records))
        )
        one = bodies.records(1)
        for round_ in range(1, ROUNDS + 1):
            print(f"  round {round_} of {ROUNDS}", flush=True)
            for system in SYSTEMS:
                with self.serving(system, round_) as (url, roots):
                    if system.kind != "floor":
                        self.check(system, url, ours, round_)
                    idle = memory_mib(roots)
                    body = None if system.kind == "floor" else system.body(one)
                    for c in CONCURRENCIES:
                        before = cpu_seconds(roots)
                        load = self.bench.load(
                            system.name,
                            url + system.path,
                            c,
                            body,
                            0 if body is None else 1,
                            duration_s=min(self.bench.config.duration_s, DURATION_S),
                        )
                        result = load.as_dict()
                        result.update(
                            system=system.name,
                            round=round_,
                            idle_rss_mib=idle["rss_mib"],
                            idle_pss_mib=idle["pss_mib"],
                            processes=idle["processes"],
                            # CPU seconds of the system's process trees over the measured
                            # run and its warm-up (bench.load runs both)
                            server_cpu_s=round(cpu_seconds(roots) - before, 2),
                        )
                        self.out["runs"].append(result)
        self.out["summary"] = stats.summarise(self.out["runs"])
        kinds = {s.name: s.kind for s in SYSTEMS}
        self.out["targets"] = stats.targets(self.out["summary"], kinds)
        return self.out


def measure(bench: Bench) -> dict[str, Any]:
    """The ``peers`` entry of the suite's results."""
    return Section(bench).run()
