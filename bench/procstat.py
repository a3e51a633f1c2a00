"""CPU time per process group, from /proc: where the cores went during a measurement.

Every process the stack starts leads its own process group (Celery pool children included),
so summing utime + stime over a group gives that component's CPU, however many processes it
has.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every live process:
    fields[2] is the process group, fields[11] and [12] user and system CPU ticks."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces: fields start after its closing parenthesis
        yield int(entry.name), stat[stat.rindex(")") + 2 :].split()


def _group_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) of every live process, summed per process group."""
    totals: dict[int, float] = {}
    for _pid, fields in process_stats():
        pgrp, utime, stime = int(fields[2]), int(fields[11]), int(fields[12])
        totals[pgrp] = totals.get(pgrp, 0.0) + (utime + stime) / _TICKS
    return totals


class CpuMeter:
    """``start()`` then ``stop()``: CPU seconds each named process group used in between."""

    def __init__(self, groups: Mapping[str, int]) -> None:
        self.groups = dict(groups)
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = _group_cpu_seconds()

    def stop(self) -> dict[str, float]:
        after = _group_cpu_seconds()
        return {
            name: round(after.get(pgid, 0.0) - self._before.get(pgid, 0.0), 3)
            for name, pgid in self.groups.items()
        }


def machine_cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
