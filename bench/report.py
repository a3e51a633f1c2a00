"""The results as a Markdown table (``latest.md``) and PNG figures, and the issue's targets
checked against them. Reads only the results dict, so it can be rerun on a saved
``latest.json``:  ``python -m bench.report bench/results/latest.json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers import report as peers_report

FIGURES = ("latency.png", "throughput.png", "training.png")


def summary_ms(values: list[float]) -> dict[str, float]:
    """Median and 99th percentile (numpy's, linear interpolation) and the maximum."""
    p50, p99 = np.percentile(values, [50, 99])
    return {
        "n": len(values),
        "p50_ms": round(float(p50) * 1000, 3),
        "p99_ms": round(float(p99) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


# -- lookups ------------------------------------------------------------------------------------


def run_of(results: dict[str, Any], label: str, connections: int) -> dict[str, Any] | None:
    runs = results.get("service", []) + results.get("during_training", {}).get("runs", [])
    for run in runs:
        if run["label"] == label and run["connections"] == connections:
            return dict(run)
    return None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #5: what it asks, the figure measured in this run, met or not."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, met: bool | None) -> None:
        out.append({"target": name, "measured": measured, "met": met})

    health16, ref16, p16 = (run_of(results, x, 16) for x in ("healthz", "reference", "predict_1"))
    if health16 and ref16 and p16:
        ratio = p16["rps"] / health16["rps"]
        add(
            "single-record /predict, c=16: >= 50% of /healthz req/s",
            f"{ratio:.0%} ({p16['rps']:,.0f} vs {health16['rps']:,.0f} req/s)",
            ratio >= 0.5,
        )
        ratio = p16["rps"] / ref16["rps"]
        add(
            "single-record /predict, c=16: >= 100% of the reference app's req/s",
            f"{ratio:.0%} ({p16['rps']:,.0f} vs {ref16['rps']:,.0f} req/s)",
            ratio >= 1.0,
        )
        ratio = p16["p99_ms"] / health16["p99_ms"]
        add(
            "single-record /predict, c=16: p99 <= 2x the /healthz p99",
            f"{ratio:.2f}x ({p16['p99_ms']:.2f} vs {health16['p99_ms']:.2f} ms)",
            ratio <= 2.0,
        )
    p1 = run_of(results, "predict_1", 1)
    if p1:
        add("single-record /predict, c=1: p50 <= 5 ms", f"{p1['p50_ms']:.2f} ms", p1["p50_ms"] <= 5)
    batch = run_of(results, "predict_1000", 4)
    if batch:
        add(
            "1,000-record requests, c=4: >= 100,000 records/s",
            f"{batch['records_per_s']:,.0f} records/s",
            batch["records_per_s"] >= 100_000,
        )
    idle, busy = run_of(results, "predict_1_idle", 16), run_of(results, "predict_1_training", 16)
    if idle and busy:
        ratio = busy["p99_ms"] / idle["p99_ms"]
        covered = busy.get("training_busy_throughout", False)
        add(
            "during training: single-record p99 at c=16 <= 1.5x its idle p99",
            f"{ratio:.2f}x ({busy['p99_ms']:.2f} vs {idle['p99_ms']:.2f} ms)"
            + ("" if covered else "; the training did not cover the whole window"),
            ratio <= 1.5 and covered,
        )
    train_path = results.get("train_path", [])
    if train_path:
        worst = max(t["post_train_ms"]["p99_ms"] for t in train_path)
        sizes = ", ".join(f"{t['rows']:,}" for t in train_path)
        add(
            "POST /train: p99 < 20 ms whatever the dataset size",
            f"worst p99 {worst:.2f} ms (datasets of {sizes} rows)",
            worst < 20,
        )
    scaling = results.get("scaling", {})
    streaming = [r for r in scaling.get("runs", []) if r["mode"] == "streaming"]
    if streaming:
        largest = max(streaming, key=lambda r: r["rows"])
        add(
            f"training {largest['rows']:,} rows: peak RSS < 1 GiB, rows/s reported",
            f"{largest['peak_rss_mib']:,.0f} MiB, {largest['rows_per_s']:,} rows/s",
            largest["peak_rss_mib"] < 1024 and largest["rows"] >= 10_000_000,
        )
    agreement = {a["rows"]: a for a in scaling.get("agreement", [])}
    if 1_000_000 in agreement:
        a = agreement[1_000_000]
        add(
            "streaming trainer >= 2x faster than the in-memory fit at 1M rows, "
            "coefficients equal to 1e-6",
            f"{a['speedup']:.2f}x, max coefficient difference "
            f"{a['max_abs_coefficient_difference']:.1e}",
            a["speedup"] >= 2 and a["max_abs_coefficient_difference"] <= 1e-6,
        )
    return out


# -- Markdown -------------------------------------------------------------------------------------


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def machine_line(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    libs = m.get("libraries", {})
    names = ("python", "fastapi", "uvicorn", "pydantic", "celery", "redis-server", "scikit-learn")
    versions = ", ".join(f"{k} {libs[k]}" for k in names if k in libs)
    return (
        f"{m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB; {versions}; "
        f"load average at start {m.get('load_average_at_start')}"
    )


def method_line(results: dict[str, Any]) -> str:
    c = results.get("config", {})
    return (
        f"{c.get('client')}; each run {c.get('duration_s')} s after a {c.get('warmup_s')} s "
        f"warm-up, at most {c.get('max_requests'):,} requests"
    )


def _cpu(run: dict[str, Any]) -> str:
    cpu, duration = run.get("cpu_s", {}), run["duration_s"]
    server = run["label"] if run["label"] in ("reference", "seed") else "api"
    parts = [
        (server, cpu.get(server)),
        ("worker", cpu.get("worker-prediction")),
        ("training", cpu.get("worker-training")),
        ("redis", cpu.get("redis")),
        ("wrk", cpu.get("wrk")),
    ]
    return " / ".join(
        f"{name} {v / duration:.2f}" for name, v in parts if v and v / duration >= 0.01
    )


_NAMES = {
    "healthz": "`GET /healthz` (floor, same API process)",
    "reference": "bare reference app (FastAPI, asyncio + h11)",
    "predict_1": "`POST /predict`, 1 record",
    "predict_100": "`POST /predict`, 100 records",
    "predict_1000": "`POST /predict`, 1,000 records",
    "seed": "seed's way (unpickle + DataFrame per request)",
    "predict_1_idle": "`POST /predict`, 1 record, idle",
    "predict_1_training": "`POST /predict`, 1 record, during training",
}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark results, {results.get('date')}",
        "",
        f"Machine: {machine_line(results)}.",
        "",
        f"Load: {method_line(results)}. CPU is cores used during the run, per component.",
        "",
    ]
    checked = targets(results)
    if checked:
        lines += ["## Targets (issue #5)", ""]
        lines += _table(
            ("target", "measured", "met"),
            (
                (t["target"], t["measured"], {True: "yes", False: "**no**", None: "-"}[t["met"]])
                for t in checked
            ),
        )
    service = results.get("service", [])
    if service:
        lines += ["## Serving: throughput and latency", ""]
        lines += _table(
            (
                "endpoint",
                "conc.",
                "req/s",
                "records/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "errors",
                "CPU (cores)",
            ),
            (
                (
                    _NAMES.get(r["label"], r["label"]),
                    r["connections"],
                    _fmt(r["rps"]),
                    _fmt(r["records_per_s"]) if r["records_per_request"] else "-",
                    _fmt(r["p50_ms"], 2),
                    _fmt(r["p99_ms"], 2),
                    _fmt(r["p999_ms"], 2),
                    sum(r["errors"].values()),
                    _cpu(r),
                )
                for r in service
            ),
        )
    during = results.get("during_training", {})
    if during.get("runs"):
        lines += [
            "## Predictions while a training runs",
            "",
            f"One training on {during['dataset_rows']:,} rows runs through the whole window: it "
            "was running before the warm-up and still is after the measurement (then it is "
            "cancelled).",
            "",
        ]
        lines += _table(
            ("", "conc.", "req/s", "p50 ms", "p99 ms", "training busy throughout", "CPU (cores)"),
            (
                (
                    _NAMES.get(r["label"], r["label"]),
                    r["connections"],
                    _fmt(r["rps"]),
                    _fmt(r["p50_ms"], 2),
                    _fmt(r["p99_ms"], 2),
                    {True: "yes", False: "no"}.get(r.get("training_busy_throughout"), "-"),
                    _cpu(r),
                )
                for r in during["runs"]
            ),
        )
    train_path = results.get("train_path", [])
    if train_path:
        inline = {
            r["dataset_rows"]: r["wall_s"]
            for r in results.get("scaling", {}).get("runs", [])
            if r["mode"] == "streaming"
        }
        lines += [
            "## Training inline against training as a job",
            "",
            "`POST /train` answers with a job id; the client of an inline training (`rvt train`, "
            "the prototype's way) waits for the whole training.",
            "",
        ]
        lines += _table(
            (
                "rows",
                "`POST /train` p50 / p99 ms",
                "job: submitted to done (s)",
                "training (s, worker)",
                "inline: client waits (s)",
                "rows/s (worker)",
            ),
            (
                (
                    f"{t['rows']:,}",
                    f"{t['post_train_ms']['p50_ms']:.2f} / {t['post_train_ms']['p99_ms']:.2f}",
                    _fmt(t["job_wall_s"], 2),
                    _fmt(t["training_seconds"], 2),
                    _fmt(inline.get(t["rows"]), 2),
                    _fmt(t["rows_per_s"]),
                )
                for t in train_path
            ),
        )
    scaling = results.get("scaling", {})
    if scaling.get("runs"):
        lines += [
            "## Training: wall time and peak memory against rows",
            "",
            "Each training in a fresh process; peak RSS is that process's own high-water mark "
            "(`VmHWM`). Streaming: "
            "`shared.training.train_model` (read, aggregate, fit, evaluate). In memory: "
            "`pandas.read_csv` of the whole file, the same split, the same pipeline fitted on "
            "the raw rows.",
            "",
        ]
        agreement = {a["rows"]: a for a in scaling.get("agreement", [])}
        lines += _table(
            ("rows", "trainer", "wall s", "rows/s", "peak RSS MiB", "vs in-memory", "coefficients"),
            (
                (
                    f"{r['rows']:,}",
                    r["mode"],
                    _fmt(r["wall_s"], 2),
                    _fmt(r["rows_per_s"]),
                    _fmt(r["peak_rss_mib"]),
                    f"{agreement[r['rows']]['speedup']:.2f}x faster"
                    if r["mode"] == "streaming" and r["rows"] in agreement
                    else "",
                    f"max diff {agreement[r['rows']]['max_abs_coefficient_difference']:.1e}"
                    if r["mode"] == "streaming" and r["rows"] in agreement
                    else "",
                )
                for r in scaling["runs"]
            ),
        )
    floors = results.get("inprocess", {})
    if floors:
        lines += [
            "## In-process floors (no HTTP, no queue)",
            "",
            "Median time per call; the seed's request is `joblib.load` + a one-row DataFrame + "
            f"`predict_proba` (`joblib.load` alone: {floors['joblib_load']['median_us']:,.0f} µs).",
            "",
        ]
        lines += _table(
            ("per call", "1 record", "100 records", "1,000 records"),
            [
                (
                    "seed's request (unpickle + DataFrame + predict_proba)",
                    _fmt(floors["seed_request"]["median_us"], 1) + " µs",
                    "",
                    "",
                ),
                *(
                    (
                        name,
                        *(
                            _fmt(floors[f"{key}_{n}"]["median_us"], 1) + " µs"
                            for n in (1, 100, 1000)
                        ),
                    )
                    for name, key in (
                        (
                            "pipeline `predict_proba` on a DataFrame built per call",
                            "predict_proba_dataframe",
                        ),
                        ("pipeline `predict_proba` (DataFrame given)", "predict_proba"),
                        ("lookup scorer (what the workers run)", "lookup"),
                    )
                ),
            ],
        )
    lines += peers_report.markdown(results)
    lines += [
        f"Whole run: {results.get('bench_seconds')} s. Figures: "
        + ", ".join(f"`{f}`" for f in FIGURES)
        + ".",
        "",
    ]
    return "\n".join(lines)


# -- figures -------------------------------------------------------------------------------------


def _footer(fig: Any, results: dict[str, Any], how: str) -> None:
    fig.text(
        0.01,
        0.01,
        f"How: {how}\nMachine: {machine_line(results)}. {results.get('date')}",
        fontsize=7,
        va="bottom",
        ha="left",
        wrap=True,
    )


def _latency_figure(results: dict[str, Any], out: Path, plt: Any) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), sharey=False)
    series = [
        ("healthz", "GET /healthz (floor)"),
        ("reference", "reference app"),
        ("predict_1", "POST /predict, 1 record"),
        ("predict_1_training", "… during training"),
        ("seed", "seed's way"),
    ]
    for ax, c in zip(axes, (1, 16), strict=True):
        for label, name in series:
            run = run_of(results, label, c)
            if run is None:
                continue
            points = sorted((float(p), v) for p, v in run["percentiles_ms"].items())
            xs = [1 / (1 - p / 100) for p, _ in points]
            ax.plot(xs, [v for _, v in points], label=f"{name} ({run['rps']:,.0f} req/s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [2, 10, 100, 1000, 10000]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(f"concurrency {c}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Latency distributions: single-record requests")
    _footer(fig, results, method_line(results) + ". Percentiles from wrk's latency histogram.")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)


def _throughput_figure(results: dict[str, Any], out: Path, plt: Any) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.6))
    labels = ("healthz", "reference", "predict_1", "seed")
    names = ("/healthz", "reference", "/predict x1", "seed's way")
    width = 0.38
    for i, c in enumerate((1, 16)):
        values = [(run_of(results, label, c) or {}).get("rps", 0) for label in labels]
        bars = left.bar(
            [x + (i - 0.5) * width for x in range(len(labels))], values, width, label=f"c={c}"
        )
        left.bar_label(bars, fmt="%.0f", fontsize=7)
    left.set_xticks(range(len(labels)))
    left.set_xticklabels(names)
    left.set_ylabel("requests/s")
    left.set_title("single-record requests/s")
    left.legend()
    groups = [
        ("predict_1", "1"),
        ("predict_100", "100"),
        ("predict_1000", "1,000"),
        ("seed", "seed, 1"),
    ]
    concurrencies = (1, 4, 16)
    width = 0.26
    for i, c in enumerate(concurrencies):
        values = [(run_of(results, label, c) or {}).get("records_per_s", 0) for label, _ in groups]
        bars = right.bar(
            [x + (i - 1) * width for x in range(len(groups))], values, width, label=f"c={c}"
        )
        right.bar_label(bars, fmt="%.0f", fontsize=6, rotation=90, padding=2)
    right.set_yscale("log")
    right.set_xticks(range(len(groups)))
    right.set_xticklabels([f"{n} per request" for _, n in groups])
    right.set_ylabel("records/s (log)")
    right.set_title("POST /predict records/s by batch size")
    right.legend()
    fig.suptitle("Throughput through the service (wrk on loopback)")
    _footer(fig, results, method_line(results) + ".")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)


def _training_figure(results: dict[str, Any], out: Path, plt: Any) -> None:
    scaling = results.get("scaling", {}).get("runs", [])
    train_path = results.get("train_path", [])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    for mode, style in (("streaming", "o-"), ("inmemory", "s--")):
        runs = sorted((r for r in scaling if r["mode"] == mode), key=lambda r: r["rows"])
        if not runs:
            continue
        name = "streaming trainer" if mode == "streaming" else "in-memory fit (pandas)"
        axes[0].plot([r["rows"] for r in runs], [r["wall_s"] for r in runs], style, label=name)
        axes[1].plot(
            [r["rows"] for r in runs], [r["peak_rss_mib"] for r in runs], style, label=name
        )
    axes[1].axhline(1024, color="grey", lw=0.8, ls=":", label="1 GiB")
    for ax, title, unit in (
        (axes[0], "training wall time", "seconds (log)"),
        (axes[1], "peak RSS of the training process", "MiB (log)"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if train_path:
        xs = range(len(train_path))
        post = [t["post_train_ms"]["p99_ms"] / 1000 for t in train_path]
        wall = [t["training_seconds"] for t in train_path]
        a = axes[2].bar([x - 0.2 for x in xs], post, 0.4, label="POST /train p99 (client waits)")
        b = axes[2].bar(
            [x + 0.2 for x in xs], wall, 0.4, label="training itself (inline: client waits)"
        )
        axes[2].bar_label(a, labels=[f"{p * 1000:.1f} ms" for p in post], fontsize=7)
        axes[2].bar_label(b, labels=[f"{w:.1f} s" for w in wall], fontsize=7)
        axes[2].set_yscale("log")
        axes[2].set_xticks(list(xs))
        axes[2].set_xticklabels([f"{t['rows']:,} rows" for t in train_path])
        axes[2].set_ylabel("seconds (log)")
        axes[2].set_title("what a client waits: job vs inline")
        axes[2].legend(fontsize=8)
    fig.suptitle("Training off the request path: time and memory against rows")
    _footer(
        fig,
        results,
        "each training in a fresh child process, peak RSS its own high-water mark (VmHWM); "
        "POST /train timed from a "
        "Python client (httpx) over loopback; synthetic CDC-schema data.",
    )
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)


def figures(results: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "matplotlib is not installed (pip install -e '.[bench]'): no figures", file=sys.stderr
        )
        return []
    _latency_figure(results, out, plt)
    _throughput_figure(results, out, plt)
    _training_figure(results, out, plt)
    return [*FIGURES, *peers_report.figure(results, out, plt)]


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(markdown(results))
    figures(results, out)
    for t in targets(results):
        mark = {True: "met   ", False: "MISSED", None: "  -   "}[t["met"]]
        print(f"  [{mark}] {t['target']}: {t['measured']}", flush=True)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench/results/latest.json")
    write(json.loads(path.read_text()), path.parent)


if __name__ == "__main__":
    main()
