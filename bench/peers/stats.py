"""Medians over the interleaved rounds, and the ratios issue 14 asks for (pure: tested alone).

A run is one wrk load of one system at one concurrency in one round (``LoadResult.as_dict()``
plus ``system`` and ``round``). Ratios come from the medians of the same run of the suite.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

#: The targets of issue 14, item 3, that this section measures.
MIN_OF_HEALTHZ = 0.85
MIN_OF_BEST_STOCK = 4.0
MIN_OF_BEST_TABLE = 3.0
MAX_C1_P50_MS = 1.0


def non_2xx(run: dict[str, Any]) -> int:
    """Responses wrk counted as HTTP errors (status >= 400)."""
    return int(run["errors"].get("status", 0))


def failures(run: dict[str, Any]) -> int:
    """Every request that did not get an answer: socket errors and timeouts, not statuses."""
    return sum(int(v) for k, v in run["errors"].items() if k != "status")


def summarise(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (system, concurrency), in the order first seen: the medians over rounds of
    req/s, p50, p99 and idle memory, every round's req/s, and the non-2xx and failed requests
    summed."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["system"], run["connections"]), []).append(run)
    rows = []
    for (system, connections), group in groups.items():
        rss = [r["idle_rss_mib"] for r in group if r.get("idle_rss_mib") is not None]
        pss = [r["idle_pss_mib"] for r in group if r.get("idle_pss_mib") is not None]
        rows.append(
            {
                "system": system,
                "connections": connections,
                "rounds": len(group),
                "rps": round(statistics.median(r["rps"] for r in group), 1),
                "rps_by_round": [r["rps"] for r in sorted(group, key=lambda r: r["round"])],
                "p50_ms": round(statistics.median(r["p50_ms"] for r in group), 3),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in group), 3),
                "non_2xx": sum(non_2xx(r) for r in group),
                "failed": sum(failures(r) for r in group),
                "idle_rss_mib": round(statistics.median(rss), 1) if rss else None,
                "idle_pss_mib": round(statistics.median(pss), 1) if pss else None,
            }
        )
    return rows


def row(summary: Sequence[dict[str, Any]], system: str, connections: int) -> dict[str, Any] | None:
    return next(
        (r for r in summary if r["system"] == system and r["connections"] == connections), None
    )


def targets(summary: Sequence[dict[str, Any]], kinds: dict[str, str]) -> list[dict[str, Any]]:
    """Issue 14's ratios from the medians: ``/predict`` against ``/healthz``, the best stock
    peer and the best peer given the table scorer (at c=16), its p99 against every peer's,
    and its c=1 p50. ``kinds`` maps a system to "stock", "table", "ours" or "floor"."""
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    ours, floor = row(summary, "predict", 16), row(summary, "healthz", 16)
    peers = [
        r
        for r in summary
        if r["connections"] == 16 and kinds.get(r["system"]) in ("stock", "table")
    ]
    if ours and floor:
        ratio = ours["rps"] / floor["rps"]
        add(
            f"/predict c=16 >= {MIN_OF_HEALTHZ}x /healthz req/s",
            f"{ratio:.2f}x ({ours['rps']:,.0f} vs {floor['rps']:,.0f})",
            ratio >= MIN_OF_HEALTHZ,
        )
    for kind, minimum in (("stock", MIN_OF_BEST_STOCK), ("table", MIN_OF_BEST_TABLE)):
        rivals = [r for r in peers if kinds[r["system"]] == kind]
        if ours and rivals:
            best = max(rivals, key=lambda r: r["rps"])
            ratio = ours["rps"] / best["rps"]
            add(
                f"/predict c=16 >= {minimum:g}x the best {kind} peer's req/s",
                f"{ratio:.2f}x ({ours['rps']:,.0f} vs {best['rps']:,.0f}, {best['system']})",
                ratio >= minimum,
            )
    if ours and peers:
        lowest = min(peers, key=lambda r: r["p99_ms"])
        add(
            "/predict c=16 p99 below every peer's",
            f"{ours['p99_ms']:.2f} ms vs lowest peer {lowest['p99_ms']:.2f} ms ({lowest['system']})",
            ours["p99_ms"] < lowest["p99_ms"],
        )
    ours1 = row(summary, "predict", 1)
    if ours1:
        add(
            f"/predict c=1 p50 < {MAX_C1_P50_MS:g} ms",
            f"{ours1['p50_ms']:.2f} ms",
            ours1["p50_ms"] < MAX_C1_P50_MS,
        )
    return out


def max_difference(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The largest absolute difference of two systems' probabilities for the same records."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"{len(theirs)} probabilities against our {len(ours)}")
    return max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
