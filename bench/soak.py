"""The soak (issue #10, item 5): mixed traffic for a long while, and nothing may grow.

    make soak                                   # 10 minutes; writes bench/results/soak.{json,md}
    .venv/bin/python -m bench.soak --ci         # the 60-second variant the tests run

It starts its own stack (:class:`cli.stack.LocalStack`: a private redis-server on a free port, a
training worker, a prediction worker, the API; loopback only, never the machine's Redis), trains
a first model, then for ``duration_s`` (longer if need be, see below) drives, all at once:

- predictions at ``c = single_clients + bulk_clients`` (16): single-record and 1,000-record
  ``POST /predict``, each client thread with its own keep-alive connection;
- a training at most every ``train_every_s``, one at a time (``POST /train`` on a small
  dataset, promoted when it passes its gate), polled with ``GET /jobs/{id}`` until it ends, and
  ``GET /jobs`` every ``list_jobs_every_s``;
- every ``admin_every_s`` an upload (``POST /datasets``, a small CSV) and a promotion
  (``GET /models``, then ``POST /models/{v}/promote`` of the newest passing version that is not
  in production);

and every ``sample_s`` samples each process of the stack (every member of each process group:
the API, each worker's main process, the training worker's pool child, redis-server): VmRSS from
``/proc/<pid>/status`` and the open descriptors in ``/proc/<pid>/fd`` (by kind); and Redis's
``DBSIZE``, its keys by kind (a ``SCAN`` of a key space of a few dozen keys), its clients by the
process holding the other end (``CLIENT LIST`` against ``/proc/net/tcp``), and ``used_memory``
(``INFO memory``, read every second). The warm-up starts with a burst of ``GET /jobs`` that
fills the API's Redis pool (:meth:`Traffic.warm_pools`).

The training worker's pool child is sampled apart: after each training has ended, once the
child is idle again, and before the next training starts
(:meth:`Traffic.sample_between_trainings`), so every training yields one such sample however
long it took. The soak goes on past ``duration_s`` (by ``overtime_s`` at most) until
:attr:`SoakConfig.steady_trainings` of them fall after the warm-up: on a slow machine it lasts
longer rather than judge the child on fewer.

What "flat" means is in :func:`analyse`; the checks in :func:`verdict`. Every loop is bounded in
time and in count, and nothing is asserted about throughput: a slow or busy machine sends fewer
requests, which weakens the soak but cannot fail it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import bodies
from bench.procstat import machine_cpu_model, process_stats
from cli.stack import LocalStack, StackError
from shared.data.synthetic import write_synthetic_csv
from shared.queues import QUEUES, broker_lists

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PREFIX = "rvt"  # the stack's REDIS_PREFIX (the default; the soak sets it explicitly)
FINAL = {"succeeded", "failed", "cancelled"}
#: The machine's shared Redis: the soak refuses to sample it, whatever the environment says.
SHARED_REDIS_PORT = 6379


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float = 600.0
    warmup_s: float = 60.0
    sample_s: float = 10.0
    train_every_s: float = 30.0
    #: an upload and a promotion, each this often
    admin_every_s: float = 60.0
    list_jobs_every_s: float = 1.0
    poll_job_every_s: float = 0.5
    single_clients: int = 8
    bulk_clients: int = 8
    bulk_records: int = 1000
    #: rows of the dataset every training reads (well within ``train_every_s`` on 2 busy cores)
    train_rows: int = 5_000
    #: the pool child's windows, in samples between trainings (one per training): a median of 3
    #: drops one odd sample; the CI variant's steady 45 s hold 4 trainings, so 2 there
    child_window: int = 3
    #: how much longer than ``duration_s`` the soak may run to get its
    #: :attr:`steady_trainings` (each training is bounded by ``train_timeout_s``)
    overtime_s: float = 300.0
    upload_rows: int = 2_000
    #: ``JOB_TTL_SECONDS`` of the soak's stack: job records expire within the soak, so the key
    #: count can plateau (with the default of 7 days, one record per training would stay).
    job_ttl_s: int = 30
    #: RSS and ``used_memory``: the largest growth allowed (the issue's 5%)
    growth_limit: float = 0.05
    #: fault injection, off by default: every Nth prediction of each client sends a record
    #: without ``age_group`` (a 422 the soak expects, counted apart, never as a failure)
    inject_invalid_every: int = 0
    #: bounds on anything that waits
    request_timeout_s: float = 30.0
    train_timeout_s: float = 120.0
    max_requests_per_client: int = 10_000_000

    @classmethod
    def ci(cls) -> SoakConfig:
        """The CI variant: one minute, the same checks, every period scaled down."""
        return cls(
            duration_s=60.0,
            warmup_s=15.0,
            sample_s=5.0,
            train_every_s=10.0,
            admin_every_s=15.0,
            job_ttl_s=8,
            train_timeout_s=60.0,
            child_window=2,
            overtime_s=180.0,
        )

    @property
    def window(self) -> int:
        """Samples per comparison window: one whole cycle of the slowest periodic activity
        (training, upload, promotion), and at least 3, so both windows see every phase of the
        traffic mix once and a median can drop a single odd sample."""
        cycle = max(self.train_every_s, self.admin_every_s)
        return max(3, math.ceil(cycle / self.sample_s))

    @property
    def steady_trainings(self) -> int:
        """Trainings whose between-trainings sample must fall after the warm-up: enough for two
        windows of the pool child that do not overlap. The steady part holds more (18 of 6 in
        the 10-minute soak) or just enough (4 of 4 in CI) at the configured periods; on a slower
        machine the soak runs longer for them (:meth:`Traffic.sample_loop`)."""
        return 2 * self.child_window

    @property
    def max_trainings(self) -> int:
        """The train loop's bound in count (its bound in time is the soak's)."""
        return int((self.duration_s + self.overtime_s) // self.train_every_s) + 2

    @property
    def job_keys_bound(self) -> int:
        """Keys of the job store alive at once: the records written within the TTL (trainings
        start at least ``train_every_s`` apart), the one running, one of slack for a record
        past its TTL that Redis's expiry cycle has not reclaimed yet; and the index and the two
        metrics hashes (the soak sends no idempotency key)."""
        return math.ceil(self.job_ttl_s / self.train_every_s) + 2 + 3


# -- sampling --------------------------------------------------------------------------------


def _read_status_kib(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _open_fds(pid: int) -> dict[str, int] | None:
    """Open descriptors by kind (``socket``, ``pipe``, ``file``, ``anon_inode:[eventpoll]``...),
    so that a descriptor that stays says what it is."""
    kinds: Counter[str] = Counter()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:  # closed in between
            continue
        if target.startswith("/"):
            kinds["file"] += 1
        else:
            kinds[
                target.split(":[")[0] if ":[" in target and "inode" not in target else target
            ] += 1
    return dict(kinds)


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{name}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def port_owners(pids: dict[str, int]) -> dict[int, str]:
    """Local TCP port -> the name of the process holding that socket (from ``/proc/net/tcp``
    and each process's descriptors), to say whose connection each Redis client is."""
    owner = {inode: name for name, pid in pids.items() for inode in _socket_inodes(pid)}
    ports: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                inode = int(fields[9])
                if inode in owner:
                    ports[int(fields[1].rsplit(":", 1)[1], 16)] = owner[inode]
    return ports


def group_members(groups: dict[str, int]) -> dict[str, list[int]]:
    """The pids of each process group (name -> leader pid), leader first, then by pid."""
    wanted = {pgid: name for name, pgid in groups.items()}
    members: dict[str, list[int]] = {name: [] for name in groups}
    for pid, fields in process_stats():
        pgrp = int(fields[2])
        if pgrp in wanted:
            members[wanted[pgrp]].append(pid)
    return {
        name: sorted(pids, key=lambda pid: (pid != groups[name], pid))
        for name, pids in members.items()
    }


def process_names(groups: dict[str, int]) -> dict[str, int]:
    """Series name -> pid: ``api``, ``worker-training``, ``worker-training/child`` (a group's
    further members are its leader's pool children: ``/child``, or ``/child1``... if several)."""
    named: dict[str, int] = {}
    for name, pids in group_members(groups).items():
        children = [pid for pid in pids if pid != groups[name]]
        if groups[name] in pids:
            named[name] = groups[name]
        for i, pid in enumerate(children, 1):
            named[f"{name}/child" if len(children) == 1 else f"{name}/child{i}"] = pid
    return named


_JOB_RECORD = re.compile(rf"^{PREFIX}:job:[0-9a-f]{{32}}$")
_LEASE = re.compile(rf"^{PREFIX}:job:[0-9a-f]{{32}}:lease$")
#: The job store's other keys (``shared/jobs/store.py``): the index, the two metrics hashes and
#: the idempotency keys. Like the records, each expires ``JOB_TTL_SECONDS`` after its last write.
_JOB_SHARED = re.compile(rf"^{PREFIX}:(jobs|metrics:jobs|metrics:job_seconds|idem:[0-9a-f]+)$")
#: Keys that exist only while work is in flight: a waiting message (the broker's queue lists),
#: a training's lease, kombu's record of an unacknowledged training message and its mutex.
_IN_FLIGHT = {
    *(name for queue in QUEUES for name in broker_lists(queue)),
    "unacked",
    "unacked_index",
    "unacked_mutex",
}


def classify_keys(keys: list[str]) -> dict[str, list[str]]:
    """``job_records``; ``job_shared`` (index, metrics, idempotency); ``in_flight``; ``other``
    (what is left: worker presence, kombu's bindings; none of it may grow)."""
    kinds: dict[str, list[str]] = {
        "job_records": [],
        "job_shared": [],
        "in_flight": [],
        "other": [],
    }
    for key in keys:
        if _JOB_RECORD.match(key):
            kinds["job_records"].append(key)
        elif _JOB_SHARED.match(key):
            kinds["job_shared"].append(key)
        elif _LEASE.match(key) or key in _IN_FLIGHT:
            kinds["in_flight"].append(key)
        else:
            kinds["other"].append(key)
    return kinds


#: ``used_memory`` includes the client buffers of the requests in flight at the instant of a
#: reading (hundreds of KiB under this traffic, on about 2 MiB, moving by a third from one second
#: to the next), so the sampler reads ``INFO memory`` every second and a sample's value is the
#: median of the readings since the previous sample.
MEMORY_EVERY_S = 1.0
#: ``GET /jobs`` per thread in :meth:`Traffic.warm_pools`
WARM_POOL_REQUESTS = 20


def clients_by_process(client: redis.Redis, pids: dict[str, int]) -> dict[str, int]:
    """Redis's clients by the process they come from (``pids``: name -> pid; ``other`` for
    the rest)."""
    owners = port_owners(pids)
    by_process: Counter[str] = Counter()
    for entry in client.client_list():
        port = int(str(entry.get("addr", ":0")).rsplit(":", 1)[1] or 0)
        by_process[owners.get(port, "other")] += 1
    return dict(sorted(by_process.items()))


def sample_redis(
    client: redis.Redis, readings: list[dict[str, Any]], pids: dict[str, int]
) -> dict[str, Any]:
    """Keys by kind now, memory as the median of ``readings`` (``INFO memory`` since the
    previous sample) and one reading now, and its clients by the process they come from
    (``pids``: name -> pid)."""
    by_process = clients_by_process(client, pids)
    keys = sorted(k.decode(errors="replace") for k in client.scan_iter(count=1000))
    kinds = classify_keys(keys)
    readings = [*readings, client.info("memory")]
    used = [int(m["used_memory"]) for m in readings]
    clients = [int(m.get("mem_clients_normal", 0)) for m in readings]
    job_bytes = sum(
        int(client.memory_usage(key, samples=0) or 0)
        for key in kinds["job_records"] + kinds["job_shared"]
    )
    return {
        "keys": int(client.dbsize()),
        "used_memory": int(statistics.median(used)),
        "used_memory_readings": len(used),
        "used_memory_spread": [min(used), max(used)],
        "clients_bytes": int(statistics.median(clients)),
        "used_memory_less_clients": int(
            statistics.median(u - c for u, c in zip(used, clients, strict=True))
        ),
        "job_store_bytes": job_bytes,
        "clients_by_process": by_process,
        "job_records": len(kinds["job_records"]),
        "job_shared_keys": len(kinds["job_shared"]),
        "in_flight_keys": len(kinds["in_flight"]),
        "other_keys": len(kinds["other"]),
        "other_key_names": kinds["other"],
    }


def sample_processes(groups: dict[str, int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, pid in process_names(groups).items():
        kinds = _open_fds(pid)
        out[name] = {
            "pid": pid,
            "rss_kib": _read_status_kib(pid, "VmRSS"),
            "fds": sum(kinds.values()) if kinds is not None else None,
            "fd_kinds": kinds,
        }
    return out


def cpu_ticks(pid: int) -> tuple[str, int] | None:
    """The state letter and the CPU ticks (user + system) of ``pid``; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[11]) + int(fields[12])


#: Names of the training worker's process group and of its pool children's series.
TRAINING_GROUP = "worker-training"
#: After a training has ended, how long the pool child is left to finish returning from the
#: task before it is probed; then it counts as idle once asleep and without CPU time for
#: ``IDLE_PROBE_S``, probed for ``IDLE_TIMEOUT_S`` at most (a sample says if it settled).
TRAINING_SETTLE_S = 1.0
IDLE_PROBE_S = 0.5
IDLE_TIMEOUT_S = 10.0


# -- traffic ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Responses by endpoint and status (``"error:<Exception>"`` when none came back)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        endpoint: str,
        status: str,
        ok: bool,
        detail: str = "",
        injected: bool = False,
        elapsed: float = 0.0,
    ) -> None:
        with self.lock:
            (self.injected if injected else self.counts)[(endpoint, status)] += 1
            if not ok and not injected and len(self.failures) < 50:
                self.failures.append(
                    {
                        "t": round(elapsed, 1),
                        "endpoint": endpoint,
                        "status": status,
                        "detail": detail,
                    }
                )

    def failed(self) -> int:
        with self.lock:
            return sum(n for (_, status), n in self.counts.items() if not status.startswith("2"))

    def injected_unexpected(self, expected: str = "422") -> int:
        with self.lock:
            return sum(n for (_, status), n in self.injected.items() if status != expected)

    def table(self, counts: Counter[tuple[str, str]] | None = None) -> dict[str, dict[str, int]]:
        with self.lock:
            source = self.counts if counts is None else counts
            out: dict[str, dict[str, int]] = {}
            for (endpoint, status), n in sorted(source.items()):
                out.setdefault(endpoint, {})[status] = n
            return out


class Traffic:
    """The mixed traffic and the sampler, as threads that stop at one event."""

    def __init__(self, config: SoakConfig, base_url: str, rds: redis.Redis, groups: dict[str, int]):
        self.config = config
        self.base_url = base_url
        self.redis = rds
        self.groups = groups
        self.tally = Tally()
        self.samples: list[dict[str, Any]] = []
        #: the training worker's group, sampled after each training (the pool child's series)
        self.between_trainings: list[dict[str, Any]] = []
        self.trainings: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.t0 = 0.0
        #: set once :attr:`SoakConfig.steady_trainings` between-trainings samples follow the
        #: warm-up: the sampler ends the soak at ``duration_s`` only then
        self.enough_trainings = threading.Event()
        self.upload_csv = b""
        self.errors: list[str] = []

    # helpers

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def client(self, keep_alive: bool = True) -> httpx.Client:
        """One connection per client thread. A thread that sends a request only now and then
        (the trainer, the uploads and promotions) opens one per request: uvicorn closes a
        connection idle for 5 s, so a kept one would be open at some samples and not at
        others, and the API's descriptors would move with the phase of the traffic."""
        return httpx.Client(
            base_url=self.base_url,
            timeout=self.config.request_timeout_s,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=int(keep_alive)),
        )

    def call(
        self,
        http: httpx.Client,
        endpoint: str,
        method: str,
        url: str,
        injected: bool = False,
        **kwargs: Any,
    ) -> httpx.Response | None:
        try:
            response = http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.record(
                endpoint,
                f"error:{type(exc).__name__}",
                False,
                str(exc)[:200],
                injected,
                self.elapsed(),
            )
            return None
        ok = response.is_success
        self.tally.record(
            endpoint,
            str(response.status_code),
            ok,
            "" if ok else response.text[:300],
            injected,
            self.elapsed(),
        )
        return response

    def wait_until(self, at: float) -> bool:
        """Sleep until ``at`` seconds into the soak; False if the soak stopped first."""
        return not self.stop.wait(max(0.0, at - self.elapsed()))

    def periodic(self, every: float, offset: float) -> Iterator[int]:
        """Ticks at ``offset + k * every`` while the soak runs (bounded by its longest)."""
        count = int((self.config.duration_s + self.config.overtime_s - offset) // every) + 1
        for k in range(max(0, count)):
            if not self.wait_until(offset + k * every):
                return
            yield k

    # the threads

    def predict_loop(self, records: int, seed: int) -> None:
        endpoint = f"POST /predict ({records})"
        body = bodies.predict_body(records)
        bad = json.dumps({"records": [{"sex": "Female"}]}).encode()
        headers = {"content-type": "application/json"}
        every = self.config.inject_invalid_every
        with self.client() as http:
            for i in range(self.config.max_requests_per_client):
                if self.stop.is_set():
                    return
                injected = every > 0 and (i + seed) % every == every - 1
                self.call(
                    http,
                    endpoint,
                    "POST",
                    "/predict",
                    injected=injected,
                    content=bad if injected else body,
                    headers=headers,
                )

    def train_loop(self) -> None:
        """One training at a time, every ``train_every_s`` or, when one takes longer, right after
        the previous one: each is waited to its end, then its pool child sampled once idle
        (:meth:`sample_between_trainings`), then the next starts. So every training yields
        a sample of the child between trainings, however slow the machine. It stops at the
        soak's end, or past ``duration_s`` once the soak has its steady trainings."""
        cfg = self.config
        start = 0.2 * cfg.sample_s  # the phase of the periodic samples, as before
        with self.client(keep_alive=False) as http:
            for _ in range(cfg.max_trainings):
                if not self.wait_until(start):
                    return
                if self.elapsed() >= cfg.duration_s and self.enough_trainings.is_set():
                    return
                training = self.train_once(http)
                self.trainings.append(training)
                if training["status"] in FINAL:  # not one that timed out: it may still run
                    self.sample_between_trainings(len(self.trainings) - 1)
                start = max(start + cfg.train_every_s, self.elapsed())

    def sample_between_trainings(self, training: int) -> None:
        """Sample the training worker's group once its pool child is idle: after
        :data:`TRAINING_SETTLE_S`, when every child is asleep and has used no CPU for
        :data:`IDLE_PROBE_S` (at most :data:`IDLE_TIMEOUT_S`; ``settled`` says if it was)."""
        group = {TRAINING_GROUP: self.groups[TRAINING_GROUP]}
        if self.stop.wait(TRAINING_SETTLE_S):
            return
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        settled = False
        before: list[tuple[str, int] | None] = []
        while not settled and time.monotonic() < deadline:
            children = [pid for name, pid in process_names(group).items() if name != TRAINING_GROUP]
            now = [cpu_ticks(pid) for pid in children]
            settled = now == before and all(c is not None and c[0] == "S" for c in now)
            before = now
            if not settled and self.stop.wait(IDLE_PROBE_S):
                return
        t = self.elapsed()
        try:
            procs = sample_processes(group)
            pids = {name: proc["pid"] for name, proc in procs.items()}
            clients = clients_by_process(self.redis, pids)
        except Exception as exc:  # a sample lost is reported, not fatal
            self.errors.append(f"sample between trainings at {t:.1f} s: {exc!r}")
            return
        self.between_trainings.append(
            {
                "t": round(t, 2),
                "training": training,
                "settled": settled,
                "processes": procs,
                "redis": {"clients_by_process": clients},
            }
        )
        steady = [s for s in self.between_trainings if s["t"] >= self.config.warmup_s]
        if len(steady) >= self.config.steady_trainings:
            self.enough_trainings.set()

    def train_once(self, http: httpx.Client) -> dict[str, Any]:
        started = self.elapsed()
        response = self.call(http, "POST /train", "POST", "/train", json={})
        if response is None or response.status_code != 202:
            return {"t": round(started, 1), "status": "not_submitted"}
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + self.config.train_timeout_s
        status = "timeout"
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:  # not stopped by the soak's end: the job is waited
            polled = self.call(http, "GET /jobs/{id}", "GET", f"/jobs/{job_id}")
            if polled is not None and polled.is_success:
                job = polled.json()
                if job["status"] in FINAL:
                    status = job["status"]
                    break
            time.sleep(self.config.poll_job_every_s)
        result = job.get("result") or {}
        return {
            "t": round(started, 1),
            "job_id": job_id,
            "status": status,
            "seconds": round(self.elapsed() - started, 2),
            "version": result.get("version"),
            "promoted": result.get("promoted"),
            "error": job.get("error"),
        }

    def warm_pools(self) -> None:
        """At the start of the warm-up, ``GET /jobs`` at the soak's concurrency for a moment.

        The API's synchronous Redis client keeps a pool that grows to the most threads that
        ever used it at once (the threadpool of sync endpoints, and ``asyncio.to_thread`` for
        the prediction workers' presence check, which up to ``c`` predictions can run together
        when its cache expires): a high-water mark, bounded by those threadpools, not a leak.
        The first 10-minute run showed it as one more descriptor in the API and in
        redis-server at 355 s, flat after. Bringing the pool to the soak's concurrency here
        keeps such a step inside the warm-up, where descriptors are not compared."""
        clients = self.config.single_clients + self.config.bulk_clients

        def burst() -> None:
            with self.client() as http:
                for _ in range(WARM_POOL_REQUESTS):
                    if self.stop.is_set():
                        return
                    self.call(http, "GET /jobs", "GET", "/jobs")

        threads = [threading.Thread(target=burst, name=f"warm-{i}") for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self.config.warmup_s)

    def list_jobs_loop(self) -> None:
        with self.client() as http:
            for _ in self.periodic(self.config.list_jobs_every_s, 0.0):
                self.call(http, "GET /jobs", "GET", "/jobs")

    def admin_loop(self) -> None:
        cfg = self.config
        with self.client(keep_alive=False) as http:
            for k in self.periodic(cfg.admin_every_s, 0.5 * cfg.sample_s):
                files = {"file": (f"soak_{k}.csv", io.BytesIO(self.upload_csv), "text/csv")}
                self.call(http, "POST /datasets", "POST", "/datasets", files=files)
                self.promote_one(http)

    def promote_one(self, http: httpx.Client) -> None:
        listed = self.call(http, "GET /models", "GET", "/models")
        if listed is None or not listed.is_success:
            return
        models = listed.json()
        candidates = [
            v["version"]
            for v in models["versions"]  # newest first
            if v["version"] != models["production"] and (v.get("gate") or {}).get("passed")
        ]
        if candidates:
            version = candidates[0]
            self.call(
                http, "POST /models/{v}/promote", "POST", f"/models/{version}/promote", json={}
            )

    def sample_loop(self) -> None:
        """A sample every ``sample_s`` until ``duration_s``, and on past it (``overtime_s`` at
        most) until the train loop has its steady trainings; then the soak stops."""
        cfg = self.config
        count = int((cfg.duration_s + cfg.overtime_s) // cfg.sample_s) + 1
        readings_per_sample = math.ceil(cfg.sample_s / MEMORY_EVERY_S)
        last_names: list[str] | None = None
        for k in range(count):
            if k * cfg.sample_s > cfg.duration_s and self.enough_trainings.is_set():
                break
            readings: list[dict[str, Any]] = []
            for _ in range(readings_per_sample):  # every second until the sample is due
                left = k * cfg.sample_s - self.elapsed()
                if left <= MEMORY_EVERY_S / 2:
                    break
                if self.stop.wait(min(MEMORY_EVERY_S, left - MEMORY_EVERY_S / 2)):
                    return
                with contextlib.suppress(redis.RedisError):  # the sample itself will say
                    readings.append(self.redis.info("memory"))
            if not self.wait_until(k * cfg.sample_s):
                return
            t = self.elapsed()
            try:
                procs = sample_processes(self.groups)
                pids = {name: proc["pid"] for name, proc in procs.items()}
                rds = sample_redis(self.redis, readings, {**pids, "soak": os.getpid()})
            except Exception as exc:  # a sample lost is reported, not fatal
                self.errors.append(f"sample at {t:.1f} s: {exc!r}")
                continue
            names = rds.pop("other_key_names")
            if names != last_names:  # the names, in the samples where they changed
                rds["other_key_names"] = last_names = names
            self.samples.append(
                {
                    "t": round(t, 2),
                    "processes": procs,
                    "redis": rds,
                }
            )
        self.stop.set()

    def run(self) -> float:
        """Every thread at once, until the sampler's last sample; returns the elapsed time."""
        cfg = self.config
        threads = [
            threading.Thread(target=self.predict_loop, args=(1, i), name=f"predict-1-{i}")
            for i in range(cfg.single_clients)
        ] + [
            threading.Thread(
                target=self.predict_loop, args=(cfg.bulk_records, i), name=f"predict-bulk-{i}"
            )
            for i in range(cfg.bulk_clients)
        ]
        threads += [
            threading.Thread(target=self.warm_pools, name="warm-pools"),
            threading.Thread(target=self.train_loop, name="train"),
            threading.Thread(target=self.list_jobs_loop, name="list-jobs"),
            threading.Thread(target=self.admin_loop, name="admin"),
        ]
        sampler = threading.Thread(target=self.sample_loop, name="sampler")
        self.t0 = time.monotonic()
        for thread in [*threads, sampler]:
            thread.daemon = True
            thread.start()
        try:
            sampler.join(cfg.duration_s + cfg.overtime_s + 4 * cfg.sample_s + 60)
        finally:
            self.stop.set()
        join_deadline = time.monotonic() + cfg.request_timeout_s + cfg.train_timeout_s + 10
        for thread in threads:
            thread.join(max(0.1, join_deadline - time.monotonic()))
            if thread.is_alive():
                self.errors.append(f"thread {thread.name} did not stop")
        return self.elapsed()


# -- analysis --------------------------------------------------------------------------------


@dataclass
class Series:
    """One series' verdict. ``first`` and ``last`` are the statistic over the first and the
    last window after the warm-up; ``growth`` is ``(last - first) / first``."""

    name: str
    unit: str
    rule: str
    first: float
    last: float
    growth: float
    ok: bool
    samples: int
    note: str = ""


def growth(first: float, last: float) -> float:
    if first == 0:
        return 0.0 if last == 0 else math.inf
    return (last - first) / first


def windows(values: Sequence[float], size: int) -> tuple[Sequence[float], Sequence[float]]:
    """The first and the last ``size`` values (fewer, and overlapping, on a short series)."""
    size = max(1, min(size, len(values)))
    return values[:size], values[-size:]


def judge(
    name: str, unit: str, values: Sequence[float], size: int, rule: str, limit: float = 0.0
) -> Series:
    """``rule``:

    - ``median<limit``: medians of the two windows, growth under ``limit`` (RSS, used_memory);
    - ``median-flat``: medians of the two windows, no growth at all (descriptors, keys);
    - ``max<=limit``: every value at most ``limit`` (job records: bounded, not flat);
    - ``info``: reported, not checked.
    """
    if not values:
        return Series(name, unit, rule, math.nan, math.nan, math.nan, False, 0, "no samples")
    if rule == "max<=limit":
        first, last = values[0], max(values)
        return Series(
            name,
            unit,
            f"max <= {limit:g}",
            first,
            last,
            growth(first, last),
            last <= limit,
            len(values),
        )
    head, tail = windows(values, size)
    first, last = statistics.median(head), statistics.median(tail)
    change = growth(first, last)
    if rule == "median<limit":
        return Series(
            name, unit, f"growth < {limit:.0%}", first, last, change, change < limit, len(values)
        )
    if rule == "median-flat":
        return Series(name, unit, "flat", first, last, change, last <= first, len(values))
    return Series(name, unit, "-", first, last, change, True, len(values))


#: How many more Redis connections a process may hold at the end than after the warm-up: its
#: pools' high-water marks (see :func:`judge_fds`).
POOL_SLACK = 2


def redis_connections(sample: dict[str, Any], name: str) -> int:
    """The Redis connections of process ``name`` in a sample. For redis-server, those of its
    clients that no process of the stack holds (the soak's own, and any stranger's): each
    process of the stack answers for its own."""
    clients = sample["redis"].get("clients_by_process", {})
    if name == "redis":
        return int(sum(clients.values()))
    return int(clients.get(name, 0))


def unattributed(sample: dict[str, Any], stack: set[str]) -> int:
    clients = sample["redis"].get("clients_by_process", {})
    return int(sum(n for who, n in clients.items() if who not in stack))


def judge_fds(name: str, rows: list[dict[str, Any]], size: int) -> Series:
    """Descriptors: every one but Redis connections exactly flat; Redis connections (counted
    from redis-server's side, by the process holding the other end) at most
    :data:`POOL_SLACK` more.

    A redis-py pool opens a connection when more threads use it at once than ever before and
    keeps it: a high-water mark, bounded by the threads that share the pool, which can first
    be reached at any time. The runs showed it as one more connection at a random moment after
    the warm-up (the prediction worker's pool, shared by the thread that publishes replies and
    the one that announces its presence; the API's synchronous pool, which
    :meth:`Traffic.warm_pools` now fills in the warm-up), and the same one more descriptor in
    redis-server. A leak per request shows in thousands, per training or upload in several
    even in the one-minute run; a pool's step in one or two."""
    usable = [s for s in rows if s["processes"][name]["fds"] is not None]
    fds = [s["processes"][name]["fds"] for s in usable]
    conns = [redis_connections(s, name) for s in usable]
    total = judge(f"{name} fds", "", fds, size, "median-flat")
    if not usable:
        return total
    rest = judge("", "", [f - c for f, c in zip(fds, conns, strict=True)], size, "median-flat")
    pools = judge("", "", conns, size, "info")
    total.rule = f"flat but Redis conns (<= +{POOL_SLACK})"
    if name == "redis":  # every client is judged at the process holding it; strangers here
        stack = {n for s in usable for n in s["processes"]}
        strangers = judge("", "", [unattributed(s, stack) for s in usable], size, "info")
        total.ok = rest.ok and strangers.last - strangers.first <= POOL_SLACK
        total.note = (
            f"clients {pools.first:g} -> {pools.last:g} (not from the stack: "
            f"{strangers.first:g} -> {strangers.last:g}), others {rest.first:g} -> {rest.last:g}"
        )
    else:
        total.ok = rest.ok and pools.last - pools.first <= POOL_SLACK
        total.note = (
            f"Redis conns {pools.first:g} -> {pools.last:g}, others {rest.first:g} -> {rest.last:g}"
        )
    return total


def is_training_child(name: str) -> bool:
    return name.startswith(TRAINING_GROUP + "/")


def analyse(
    samples: list[dict[str, Any]], between: list[dict[str, Any]], config: SoakConfig
) -> list[Series]:
    """Each series after the warm-up, first window against last window.

    Why medians of windows, rather than the last sample against the first: RSS moves with the
    work in flight at the instant of a sample (a 1,000-record request being parsed, a model
    being swapped in after a promotion, client buffers in Redis), so two single samples differ
    by that noise alone. A window spans one whole cycle of the periodic traffic
    (:attr:`SoakConfig.window`), so both windows see the same mix, and the median of each drops
    a sample that caught a burst. A leak moves the whole window, and shows.

    Like with like: the training pool child's RSS and descriptors depend on whether it is
    training (it holds the CSV open, and the fit's arrays), so it is judged only on
    ``between``, the samples the train loop takes after each training once the child is idle
    (:meth:`Traffic.sample_between_trainings`), in windows of :attr:`SoakConfig.child_window`
    of them; the periodic samples, which may catch it training, are not used for it. The soak
    runs until it has :attr:`SoakConfig.steady_trainings` of them after the warm-up, two
    windows that do not overlap; fewer (trainings that timed out, or the soak's
    ``overtime_s`` spent) fail the child's series, with the count in the note. Descriptors
    must not grow at all, but for connections that Redis pools keep at their high-water mark
    (:func:`judge_fds`).

    Redis's ``used_memory`` counts the client buffers of the requests in flight at the instant
    (``mem_clients_normal``: about 400 KiB of 2.2 MiB under this traffic, moving by a quarter
    from one sample to the next, so that even medians of three samples moved by up to 3% in
    one-minute runs), so the check is on ``used_memory`` less those buffers: the keys, the
    scripts and Redis's own overhead, which is where a leak would stay. Both parts are
    reported. Buffers that grew without bound (a subscriber that nobody reads) would show as
    prediction replies timing out, that is as failed requests, and a leaked connection as
    redis-server's descriptors growing.

    Redis keys, counted by kind, because their total legitimately moves: every key of the job
    store (the records, the index, the metrics hashes) expires ``JOB_TTL_SECONDS`` after its
    last write. With the default of 7 days a record per training would stay for the whole
    soak, so the soak's stack sets the TTL below the warm-up (30 s; 8 s in CI): records then
    expire within the soak, and what is checked is that the job store's keys stay under
    :attr:`SoakConfig.job_keys_bound` (a key without an expiry would pile up past it). Keys of
    work in flight (queue lists, a lease, kombu's unacked hashes) come and go with the traffic
    and are reported only; every other key (worker presence, kombu's bindings) must stay
    exactly flat. ``DBSIZE`` itself is reported: it is their sum, and moves with the phase of
    the training cycle at the instant of a sample.
    """
    steady = [s for s in samples if s["t"] >= config.warmup_s]
    idle = [s for s in between if s["t"] >= config.warmup_s]
    limit = config.growth_limit
    out: list[Series] = []
    names = sorted({n for s in [*steady, *idle] for n in s["processes"]})
    for name in names:
        size, note, enough = config.window, "", True
        if is_training_child(name):
            rows = [s for s in idle if name in s["processes"]]
            size = config.child_window
            enough = len(rows) >= config.steady_trainings
            note = f"between trainings only: {len(rows)} samples, one per training" + (
                ""
                if enough
                else f"; too few, {config.steady_trainings} needed (2 windows of child_window="
                f"{config.child_window}) and overtime_s={config.overtime_s:g} did not get them: "
                "see the trainings"
            )
        else:
            rows = [s for s in steady if name in s["processes"]]
        rss = [
            s["processes"][name]["rss_kib"] / 1024
            for s in rows
            if s["processes"][name]["rss_kib"] is not None
        ]
        for series in (
            judge(f"{name} RSS", "MiB", rss, size, "median<limit", limit),
            judge_fds(name, rows, size),
        ):
            series.ok = series.ok and enough
            out.append(replace_note(series, note))
    redis_rows = [s["redis"] for s in steady]
    memory = [r["used_memory"] / 1024 for r in redis_rows]
    net = [r["used_memory_less_clients"] / 1024 for r in redis_rows]
    clients = [r["clients_bytes"] / 1024 for r in redis_rows]
    out.append(
        judge("redis used_memory less client buffers", "KiB", net, size, "median<limit", limit)
    )
    out.append(
        replace_note(
            judge("redis used_memory", "KiB", memory, size, "info"),
            "the sum of the row above and the one below",
        )
    )
    out.append(
        replace_note(
            judge("redis client buffers", "KiB", clients, size, "info"),
            "mem_clients_normal: requests in flight",
        )
    )
    out.append(judge("redis keys (DBSIZE)", "", [r["keys"] for r in redis_rows], size, "info"))
    out.append(
        replace_note(
            judge(
                "redis keys: other", "", [r["other_keys"] for r in redis_rows], size, "median-flat"
            ),
            "presence, kombu bindings",
        )
    )
    job_keys = [r["job_records"] + r["job_shared_keys"] for r in redis_rows]
    out.append(
        replace_note(
            judge("redis keys: job store", "", job_keys, size, "max<=limit", config.job_keys_bound),
            f"expire with JOB_TTL_SECONDS={config.job_ttl_s}",
        )
    )
    out.append(
        replace_note(
            judge(
                "redis keys: in flight", "", [r["in_flight_keys"] for r in redis_rows], size, "info"
            ),
            "queue lists, lease, unacked",
        )
    )
    return out


def replace_note(series: Series, note: str) -> Series:
    if note:
        series.note = f"{series.note}; {note}" if series.note else note
    return series


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


def verdict(
    series: list[Series],
    tally: Tally,
    trainings: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    config: SoakConfig,
    errors: list[str],
) -> list[Check]:
    checks = [
        Check(
            f"{s.name}: {s.rule}",
            s.ok,
            fmt_series(s) + (f"; {s.note}" if s.note and not s.ok else ""),
        )
        for s in series
        if s.rule != "-"
    ]
    failed = tally.failed()
    checks.append(Check("no request failed", failed == 0, f"{failed} failed"))
    if config.inject_invalid_every:
        unexpected = tally.injected_unexpected()
        checks.append(
            Check("injected faults answered 422", unexpected == 0, f"{unexpected} otherwise")
        )
    bad = [t for t in trainings if t["status"] != "succeeded"]
    checks.append(
        Check(
            "every training succeeded",
            not bad and bool(trainings),
            f"{len(trainings)} trainings; not succeeded: {bad[:3]}",
        )
    )
    # the soak did what it says (at least once after the warm-up), however slow the machine
    table = tally.table()
    for endpoint in (
        "POST /predict (1)",
        f"POST /predict ({config.bulk_records})",
        "POST /train",
        "GET /jobs/{id}",
        "GET /jobs",
        "POST /datasets",
        "POST /models/{v}/promote",
    ):
        done = sum(n for status, n in table.get(endpoint, {}).items() if status.startswith("2"))
        checks.append(Check(f"traffic: {endpoint} answered", done > 0, f"{done} answered"))
    steady = [s for s in samples if s["t"] >= config.warmup_s]
    expected = int((config.duration_s - config.warmup_s) // config.sample_s) + 1
    checks.append(
        Check(
            "samples after the warm-up",
            len(steady) >= max(2, expected - 1),
            f"{len(steady)} of {expected}",
        )
    )
    replaced = replaced_processes(samples)
    checks.append(Check("no process replaced or lost", not replaced, "; ".join(replaced)))
    checks.append(Check("no sampler or thread error", not errors, "; ".join(errors[:5])))
    return checks


def replaced_processes(samples: list[dict[str, Any]]) -> list[str]:
    """A series whose pid changed (a pool child replaced, a process restarted), or that
    vanished before the end."""
    out: list[str] = []
    if not samples:
        return out
    seen: dict[str, int] = {}
    for sample in samples:
        for name, proc in sample["processes"].items():
            if name in seen and seen[name] != proc["pid"]:
                out.append(f"{name}: pid {seen[name]} -> {proc['pid']} at {sample['t']:.0f} s")
            seen[name] = proc["pid"]
    last = set(samples[-1]["processes"])
    out += [f"{name}: gone at the end" for name in sorted(set(seen) - last)]
    return out


# -- report ----------------------------------------------------------------------------------


def _num(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit in ("MiB", "KiB"):
        return f"{value:,.1f} {unit}"
    return f"{value:g}"


def fmt_series(s: Series) -> str:
    return f"{_num(s.first, s.unit)} -> {_num(s.last, s.unit)} ({fmt_growth(s.growth)})"


def fmt_growth(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "+inf"
    return f"{value:+.2%}"


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# Soak: {cfg['duration_s']:g} s of mixed traffic",
        "",
        f"{result['started_at']}, {result['machine']['cores']} cores "
        f"({result['machine']['cpu']}), load average {result['machine']['load_average_at_start']}"
        f" at the start, {result['machine']['load_average_at_end']} at the end. "
        f"Warm-up {cfg['warmup_s']:g} s, a sample every {cfg['sample_s']:g} s, windows of "
        f"{result['window']} samples; predictions at c={cfg['single_clients'] + cfg['bulk_clients']}"
        f" ({cfg['single_clients']} single-record + {cfg['bulk_clients']} "
        f"{cfg['bulk_records']:,}-record clients), a training at most every "
        f"{cfg['train_every_s']:g} s ({cfg['train_rows']:,} rows; the pool child judged in "
        f"windows of {cfg['child_window']} samples between trainings), an upload and a promotion every {cfg['admin_every_s']:g} s,"
        f" `JOB_TTL_SECONDS={cfg['job_ttl_s']}`. Elapsed {result['elapsed_s']:.0f} s.",
        "",
        f"**{'PASS' if result['ok'] else 'FAIL'}**",
        "",
        "| series | rule | first | last | growth | ok | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result["series"]:
        lines.append(
            f"| {s['name']} | {s['rule']} | {_num(s['first'], s['unit'])} | "
            f"{_num(s['last'], s['unit'])} | {fmt_growth(s['growth'])} | "
            f"{'-' if s['rule'] == '-' else 'yes' if s['ok'] else 'NO'} | {s['note']} |"
        )
    lines += ["", "| endpoint | responses by status | per second |", "|---|---|---|"]
    for endpoint, statuses in result["requests"].items():
        total = sum(statuses.values())
        by = ", ".join(f"{k}: {v:,}" for k, v in statuses.items())
        lines.append(f"| `{endpoint}` | {by} | {total / result['elapsed_s']:.1f} |")
    if result["injected"]:
        lines += ["", f"Injected faults (not failures): {result['injected']}"]
    t = result["trainings"]
    between = result["between_trainings"]
    steady = sum(b["t"] >= cfg["warmup_s"] for b in between)
    needed = 2 * cfg["child_window"]
    lines += [
        "",
        f"Trainings: {len(t)} ({dict(Counter(x['status'] for x in t))}), "
        f"seconds each: median {result['training_seconds_median']}, "
        f"max {result['training_seconds_max']}; the pool child sampled after "
        f"{len(between)} of them ({steady} after the warm-up, {needed} needed, "
        f"{len(between) - sum(b['settled'] for b in between)} not idle within "
        f"{IDLE_TIMEOUT_S:g} s).",
        "",
        "| check | ok | detail |",
        "|---|---|---|",
    ]
    for c in result["checks"]:
        lines.append(f"| {c['name']} | {'yes' if c['ok'] else 'NO'} | {c['detail']} |")
    if result["failures"]:
        lines += ["", "First failures:", ""]
        lines += [f"- {json.dumps(f)}" for f in result["failures"][:10]]
    return "\n".join(lines) + "\n"


# -- running it ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "cores": os.cpu_count(),
        "cpu": machine_cpu_model(),
        "python": platform.python_version(),
        "redis-server": next((w[2:] for w in version if w.startswith("v=")), "unknown"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def stack_env(config: SoakConfig) -> dict[str, str]:
    return {
        "JOB_TTL_SECONDS": str(config.job_ttl_s),
        "DEFAULT_DATASET_ROWS": str(config.train_rows),
        "REDIS_PREFIX": PREFIX,
        "API_KEY": "",  # open: the soak sends no key, whatever the caller's environment holds
    }


def private_redis(stack: LocalStack) -> redis.Redis:
    url = stack.redis_url or ""
    port = int(url.rsplit(":", 1)[1].split("/")[0]) if url.count(":") >= 2 else 0
    if "redis" not in stack.processes or port in (0, SHARED_REDIS_PORT):
        raise StackError(f"the soak samples only the Redis it started itself, not {url!r}")
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def first_training(base_url: str, timeout: float) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        response = http.post("/train", json={})
        response.raise_for_status()
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
            if job["status"] in FINAL:
                if job["status"] != "succeeded":
                    raise StackError(f"the first training did not succeed: {job}")
                return job
            time.sleep(0.2)
    raise StackError(f"the first training did not finish within {timeout:.0f} s")


def run_soak(config: SoakConfig, work: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Start a stack under ``work``, soak it, stop it; the result (``ok``: every check held)."""
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_synthetic_csv(data_dir / "synthetic_default.csv", config.train_rows, seed=3)
    upload = work / "upload.csv"
    write_synthetic_csv(upload, config.upload_rows, seed=11)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    info = machine()
    stack = LocalStack(
        models_dir=work / "models",
        data_dir=data_dir,
        log_dir=work / "logs",
        env=stack_env(config),
    )
    try:
        stack.start(timeout=120)
        rds = private_redis(stack)
        log(f"stack up at {stack.base_url} (redis {stack.redis_url}); training a first model")
        first_training(stack.base_url, config.train_timeout_s)
        groups = {name: p.popen.pid for name, p in stack.processes.items()}
        traffic = Traffic(config, stack.base_url, rds, groups)
        traffic.upload_csv = upload.read_bytes()
        log(f"soaking for {config.duration_s:g} s (warm-up {config.warmup_s:g} s)")
        try:
            elapsed = traffic.run()
        finally:
            rds.close()
        alive = {name: p.alive() for name, p in stack.processes.items()}
        logs = {name: p.log_tail(15) for name, p in stack.processes.items() if not alive[name]}
    finally:
        stack.stop()
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    errors = traffic.errors + [f"{name} exited:\n{logs[name]}" for name in logs]
    series = analyse(traffic.samples, traffic.between_trainings, config)
    checks = verdict(series, traffic.tally, traffic.trainings, traffic.samples, config, errors)
    seconds = [t["seconds"] for t in traffic.trainings if "seconds" in t]
    return {
        "started_at": started_at,
        "machine": info,
        "config": asdict(config),
        "window": config.window,
        "elapsed_s": round(elapsed, 1),
        "ok": all(c.ok for c in checks),
        "series": [asdict(s) for s in series],
        "checks": [asdict(c) for c in checks],
        "requests": traffic.tally.table(),
        "injected": traffic.tally.table(traffic.tally.injected),
        "failures": traffic.tally.failures,
        "trainings": traffic.trainings,
        "training_seconds_median": round(statistics.median(seconds), 2) if seconds else None,
        "training_seconds_max": max(seconds) if seconds else None,
        "samples": traffic.samples,
        "between_trainings": traffic.between_trainings,
    }


def _json_safe(value: Any) -> Any:
    """NaN and infinity as strings: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_results(result: dict[str, Any], out: Path, stem: str = "soak") -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    md_path.write_text(markdown(result))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--ci", action="store_true", help="the 60-second variant")
    parser.add_argument("--duration", type=float, help="seconds of traffic (default: 600)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"where soak.json and soak.md go (default: {RESULTS.relative_to(ROOT)}, "
        "but nowhere for --ci)",
    )
    parser.add_argument(
        "--inject-invalid-every",
        type=int,
        default=0,
        help="every Nth prediction per client is an invalid body (expected 422; default: none)",
    )
    args = parser.parse_args(argv)
    config = SoakConfig.ci() if args.ci else SoakConfig()
    overrides: dict[str, Any] = {"inject_invalid_every": args.inject_invalid_every}
    if args.duration:
        overrides["duration_s"] = args.duration
    config = SoakConfig(**{**asdict(config), **overrides})
    with tempfile.TemporaryDirectory(prefix="rvt-soak-") as tmp:
        result = run_soak(config, Path(tmp))
    print(markdown(result))
    out = args.out or (None if args.ci else RESULTS)
    if out is not None:
        paths = write_results(result, out)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
