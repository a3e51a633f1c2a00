"""The peers section of ``latest.md`` and its figure, ``peers.png`` (called by bench/report.py;
reads only the results dict, so it reruns on a saved ``latest.json``)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.peers import stats

FIGURE = "peers.png"
#: Short names for the figure's axis.
_SHORT = {
    "predict": "ours\n/predict",
    "mlserver_sklearn": "MLServer\nstock",
    "mlserver_sklearn_batching": "MLServer\nstock+batching",
    "mlserver_table": "MLServer\ntable",
    "bentoml_sklearn": "BentoML\nstock",
    "bentoml_table": "BentoML\ntable",
}
_COLOURS = {"ours": "tab:green", "stock": "tab:red", "table": "tab:blue"}


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _titles(peers: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["title"] for s in peers.get("systems", [])}


def _kinds(peers: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["kind"] for s in peers.get("systems", [])}


def _versions(peers: dict[str, Any]) -> str:
    parts = []
    for framework, info in peers.get("install", {}).items():
        v = info.get("versions", {})
        names = (
            ("mlserver", "mlserver-sklearn", "uvloop") if framework == "mlserver" else ("bentoml",)
        )
        pins = ", ".join(f"{n} {v[n]}" for n in names if n in v)
        how = "reused" if info.get("reused") else f"installed in {info.get('seconds')} s"
        parts.append(f"{pins} ({how})")
    return "; ".join(parts)


def _cores(runs: list[dict[str, Any]], system: str, c: int, warmup: float) -> str:
    """Median cores the system's processes used over a load (its warm-up included)."""
    used = [
        r["server_cpu_s"] / (r["duration_s"] + warmup)
        for r in runs
        if r["system"] == system and r["connections"] == c and "server_cpu_s" in r
    ]
    return f"{statistics.median(used):.2f}" if used else "-"


def markdown(results: dict[str, Any]) -> list[str]:
    """The section's lines; none when the run had no peers section."""
    peers = results.get("peers")
    if not peers or not peers.get("summary"):
        return []
    # recomputed from the runs, so a saved latest.json reports as a fresh one does
    titles, summary = _titles(peers), stats.summarise(peers["runs"])
    worst: dict[str, float] = {}
    for check in peers.get("checks", []):
        worst[check["system"]] = max(worst.get(check["system"], 0.0), check["max_abs_difference"])
    lines = [
        "## The peers, side by side",
        "",
        f"The same registry version ({peers['version']}, sha256 `{peers['artifact_sha256'][:12]}…`) "
        f"served by each system, one at a time (the others stopped, our API idle), "
        f"{max((r['rounds'] for r in summary), default=0)} interleaved rounds, medians shown. "
        f"Peers in venvs of their own: {_versions(peers)}; per-request logging off in each. "
        f"Every system's probabilities for the same {peers['checked_records']} records equal "
        f"`POST /predict`'s to {peers['tolerance']:g} (largest difference: "
        + ", ".join(f"{s} {d:.1e}" for s, d in worst.items())
        + "). Idle memory: the process tree after start-up and the check, before any load "
        "(ours: API + prediction worker + Redis); RSS sums count shared pages in each process, "
        "PSS once. Server CPU: CPU seconds of that tree over the load and its warm-up, per "
        "second. Figure: `peers.png`.",
        "",
        "| target (issue 14) | measured | met |",
        "|---|---|---|",
    ]
    for t in stats.targets(summary, _kinds(peers)):
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    lines.append("")
    warmup = float(results.get("config", {}).get("warmup_s") or 0.0)
    for c in (16, 1):
        ours = stats.row(summary, "predict", c)
        lines += [
            f"Concurrency {c}:",
            "",
            "| system | req/s (median) | req/s per round | p50 ms | p99 ms | non-2xx | "
            "failed | idle RSS / PSS MiB | server CPU (cores) | /predict's req/s over this |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in summary if r["connections"] == c):
            ratio = f"{ours['rps'] / r['rps']:.2f}x" if ours and r["rps"] else "-"
            lines.append(
                f"| {titles.get(r['system'], r['system'])} | {_fmt(r['rps'])} | "
                + " / ".join(_fmt(x) for x in r["rps_by_round"])
                + f" | {_fmt(r['p50_ms'], 2)} | {_fmt(r['p99_ms'], 2)} | {r['non_2xx']} | "
                f"{r['failed']} | {_fmt(r['idle_rss_mib'])} / {_fmt(r.get('idle_pss_mib'))} | "
                f"{_cores(peers['runs'], r['system'], c, warmup)} | {ratio} |"
            )
        lines.append("")
    return lines


def figure(results: dict[str, Any], out: Path, plt: Any) -> list[str]:
    """Requests/s and p99 of each system at c=16 and c=1, with our ``/healthz`` drawn as a
    line; the figure's name, or none when the run had no peers section."""
    peers = results.get("peers")
    if not peers or not peers.get("summary"):
        return []
    summary, kinds = stats.summarise(peers["runs"]), _kinds(peers)
    names = [s["name"] for s in peers["systems"] if s["kind"] != "floor"]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    for col, c in enumerate((16, 1)):
        rows = [stats.row(summary, name, c) for name in names]
        floor = stats.row(summary, "healthz", c)
        for ax, key, unit in (
            (axes[0][col], "rps", "requests/s"),
            (axes[1][col], "p99_ms", "p99 ms"),
        ):
            values = [(r or {}).get(key, 0) for r in rows]
            colours = [_COLOURS.get(kinds[n], "grey") for n in names]
            bars = ax.bar(range(len(names)), values, color=colours)
            ax.bar_label(bars, fmt="%.1f" if key == "p99_ms" else "%.0f", fontsize=8)
            if floor:
                ax.axhline(
                    floor[key], color="black", ls="--", lw=1,
                    label=f"our GET /healthz: {floor[key]:,.{1 if key == 'p99_ms' else 0}f}",
                )  # fmt: skip
                ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
            ax.set_yscale("log")
            # room above the tallest bar for its label and the legend
            drawn = [v for v in (*values, floor[key] if floor else 0) if v > 0]
            if drawn:
                ax.set_ylim(min(drawn) / 2, max(drawn) * 4)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels([_SHORT.get(n, n) for n in names], fontsize=8)
            ax.set_ylabel(f"{unit} (log)")
            ax.set_title(f"{unit}, concurrency {c} (median of rounds)")
            ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.suptitle(
        "One record per request: our /predict against MLServer and BentoML "
        "(green: ours; red: stock predict_proba; blue: the peer given our table scorer)"
    )
    machine = results.get("machine", {})
    fig.text(
        0.01, 0.01,
        f"wrk on loopback, each system alone; {machine.get('cores')} cores "
        f"({machine.get('cpu')}); {results.get('date')}",
        fontsize=7, va="bottom", ha="left",
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(out / FIGURE, dpi=110)
    plt.close(fig)
    return [FIGURE]
