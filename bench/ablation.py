"""An isolated A/B of the prediction path's Redis client and task message, in one run (issue #9).

    .venv/bin/python -m bench.ablation [--base 5e02183] [--rounds 12] [--side-by-side 16]

Four whole trees, identical but for ``api/queue/``:

- A: ``git archive <base>``: the hand-written RESP client and the hand-built task message;
- B: redis-py's asyncio client (with hiredis) and the hand-built message: this tree's
  ``api/queue/`` with ``bench/results/ablation-redis-py.patch`` applied and ``<base>``'s
  ``messages.py`` (plus a one-line adapter);
- C: redis-py's client and the Celery-built message (this tree's, patched the same way);
- D: this tree's ``api/queue/`` as it is: the hand-written client, the Celery-built message.

Everything outside ``api/queue/`` comes from ``<base>``, so uncommitted work elsewhere in the
tree does not leak into the comparison. Each tree runs as its own stack (private Redis, the
workers and the API, with ``cli.stack``'s command lines), all at once, sharing one model
registry trained once. Then rounds of A, B, C, D, A, B, ...: in each, ``GET /healthz`` at c=16
(the floor: the same API process, no queue), single-record ``POST /predict`` at c=16 and at
c=1, with wrk; the API's and the other processes' CPU is read from /proc meanwhile. Then runs
of ``POST /predict`` at c=16 on all of them at once ("side by side"). The machine is shared,
so the figures that decide are medians: over rounds, of the same-round ratios and of the
side-by-side ratios; each variant's ratio to its own ``/healthz`` is shown too.

Results: ``bench/results/ablation.json`` and ``ablation.md``, which opens with the decision by
the rule of issue #9: the project's own code stays only if its ``/predict`` c=16 throughput,
median over rounds, is more than 10% higher than the library's (client: A against B; message:
with the client that stays, A against D or B against C). The other figures (same-round and side-by-side ratios, the pairs D against C and
A against D, API CPU per prediction) are there to show how firm that is.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import bodies
from bench.loadgen import run_wrk
from bench.procstat import CpuMeter
from bench.suite import ROOT, machine, wait_http
from cli.stack import LocalStack
from shared.data.synthetic import write_synthetic_csv

RESULTS = ROOT / "bench" / "results"
QUEUE_PACKAGE = "api/queue"
REDIS_PY_PATCH = RESULTS / "ablation-redis-py.patch"
#: Appended to ``<base>``'s messages.py in variant B: the interface the client calls now.
HAND_BUILT_ADAPTER = '''

def message_builder(settings: object) -> object:
    """Added by bench/ablation.py: the hand-built message behind the new client's interface."""
    return task_message
'''
#: The rule of issue #9: the project's own code must beat the library by more than this.
MARGIN = 0.10
DATASET = "rows_50000.csv"
#: (label, path, connections): what each variant gets in every round, in this order.
LOADS = (
    ("healthz_c16", "/healthz", 16),
    ("predict_c16", "/predict", 16),
    ("predict_c1", "/predict", 1),
)


@dataclass(frozen=True)
class Variant:
    name: str
    client: str
    message: str


VARIANTS = (
    Variant("A", "hand-written RESP client", "hand-built"),
    Variant("B", "redis-py asyncio + hiredis", "hand-built"),
    Variant("C", "redis-py asyncio + hiredis", "Celery-built"),
    Variant("D", "hand-written RESP client", "Celery-built"),
)
#: (what, (ours, library) pairs that differ only in it; what stays if ours wins, if not). The
#: client is decided by its first pair; the message by its pair with the client that stays.
COMPARISONS = (
    ("client", (("A", "B"), ("D", "C")), "hand-written RESP client", "redis-py asyncio + hiredis"),
    ("message", (("A", "D"), ("B", "C")), "hand-built", "Celery-built"),
)


# -- the trees ---------------------------------------------------------------------------------


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout


def build_trees(base: str, work: Path) -> dict[str, Path]:
    """A, B, C and D as folders (see the module docstring); the repository is only read."""
    trees = {name: work / name for name in "ABCD"}
    trees["A"].mkdir()
    with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", base))) as tar:
        tar.extractall(trees["A"], filter="data")
    for name in "DCB":
        shutil.copytree(trees["A"], trees[name])
        shutil.rmtree(trees[name] / QUEUE_PACKAGE)
        shutil.copytree(
            ROOT / QUEUE_PACKAGE,
            trees[name] / QUEUE_PACKAGE,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    for name in "BC":
        subprocess.run(["git", "apply", str(REDIS_PY_PATCH)], cwd=trees[name], check=True)
        (trees[name] / QUEUE_PACKAGE / "resp.py").unlink()
    messages = git("show", f"{base}:{QUEUE_PACKAGE}/messages.py").decode()
    (trees["B"] / QUEUE_PACKAGE / "messages.py").write_text(messages + HAND_BUILT_ADAPTER)
    return trees


def check_imports(tree: Path) -> None:
    """Each stack must run its own tree's code, not the editable install's."""
    out = subprocess.run(
        [sys.executable, "-c", "import api.queue.predictions as m; print(m.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).is_relative_to(tree):
        raise RuntimeError(f"{tree.name} imports {out}, not its own tree")


# -- the stacks --------------------------------------------------------------------------------


def start_stack(tree: Path, work: Path, models: Path, data: Path) -> LocalStack:
    stack = LocalStack(
        models_dir=models,
        data_dir=data,
        log_dir=work / f"logs-{tree.name}",
        env={"LOG_LEVEL": "WARNING", "DEFAULT_DATASET": DATASET, "PYTHONPATH": str(tree)},
        cwd=tree,
    )
    try:
        stack.start(timeout=180)
    except BaseException:
        stack.stop()
        raise
    return stack


def train_once(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=60) as http:
        job_id = http.post("/train", json={}).json()["job_id"]
        deadline = time.monotonic() + 300
        while (status := http.get(f"/jobs/{job_id}").json()["status"]) not in (
            "succeeded",
            "failed",
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the training did not end within 300 s")
            time.sleep(0.2)
    if status != "succeeded":
        raise RuntimeError("the training failed: see the stack's logs")


def wait_predicting(stack: LocalStack, timeout: float = 120) -> None:
    """Until /predict answers 200: each stack's workers find the shared model on their own."""
    wait_http(f"{stack.base_url}/healthz", timeout)
    deadline = time.monotonic() + timeout
    body = bodies.predict_body(1)
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        while True:
            response = http.post(
                "/predict", content=body, headers={"content-type": "application/json"}
            )
            if response.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{stack.base_url}/predict: {response.status_code} {response.text}"
                )
            time.sleep(0.5)


# -- measuring ---------------------------------------------------------------------------------


def pushes(stack: LocalStack) -> int:
    """LPUSH calls the stack's Redis has served: one per batch of predictions."""
    client = redis.Redis.from_url(stack.redis_url or "", socket_timeout=5)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_lpush", {}).get("calls", 0))


def measure(stack: LocalStack, load: tuple[str, str, int], duration: float) -> dict[str, Any]:
    """One load on one variant, with the CPU each of its processes used meanwhile."""
    label, path, connections = load
    for process in stack.processes.values():
        if not process.alive():
            raise RuntimeError(f"{process.name} of {stack.cwd.name} exited:\n{process.log_tail()}")
    groups = {name: process.popen.pid for name, process in stack.processes.items()}
    meter = CpuMeter(groups)
    pushed = pushes(stack)
    meter.start()
    result = run_wrk(
        stack.base_url + path,
        label=label,
        connections=connections,
        duration_s=duration,
        max_requests=500_000,
        body=bodies.predict_body(1) if path == "/predict" else None,
    )
    cpu = meter.stop()
    batches = pushes(stack) - pushed
    return {
        "rps": round(result.rps, 1),
        "requests": result.requests,
        "p50_ms": round(result.p50, 3),
        "p99_ms": round(result.p99, 3),
        "errors": result.failed,
        "api_cpu_us_per_request": round(cpu.get("api", 0.0) / max(1, result.requests) * 1e6, 1),
        "requests_per_batch": round(result.requests / batches, 2) if batches else 0.0,
        "cpu_cores": {k: round(v / result.duration_s, 2) for k, v in cpu.items()},
        "load_average": round(os.getloadavg()[0], 2),
    }


def run_round(stacks: dict[str, LocalStack], duration: float) -> dict[str, dict[str, Any]]:
    """Each load on A, B and C in turn, so that the variants' runs of one load are seconds
    apart: what else the machine does changes less between them than between loads."""
    out: dict[str, dict[str, Any]] = {name: {} for name in stacks}
    for load in LOADS:
        for name, stack in stacks.items():
            out[name][load[0]] = measure(stack, load, duration)
    for measured in out.values():
        measured["predict_share_of_healthz"] = round(
            measured["predict_c16"]["rps"] / measured["healthz_c16"]["rps"], 4
        )
    return out


def run_side_by_side(stacks: dict[str, LocalStack], duration: float) -> dict[str, dict[str, Any]]:
    """/predict c=16 on A, B and C at once: whatever else the machine does then weighs on the
    three alike, so their ratios are steadier than those of runs taken one after another
    (each gets about a third of the machine: only the ratios mean something)."""
    with ThreadPoolExecutor(len(stacks)) as pool:
        futures = {
            name: pool.submit(measure, stack, LOADS[1], duration) for name, stack in stacks.items()
        }
        return {name: {"predict_c16": future.result()} for name, future in futures.items()}


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    out: dict[str, Any] = {"rounds": len(rounds)}
    for label, _, _ in LOADS:
        rows = [r[label] for r in rounds]
        keys = ("rps", "p50_ms", "p99_ms", "api_cpu_us_per_request", "requests_per_batch")
        out[label] = {key: med([row[key] for row in rows]) for key in keys}
        out[label]["errors"] = sum(row["errors"] for row in rows)
        out[label]["cpu_cores"] = {
            name: med([row["cpu_cores"][name] for row in rows]) for name in rows[0]["cpu_cores"]
        }
    out["predict_share_of_healthz"] = med([r["predict_share_of_healthz"] for r in rounds])
    return out


def message_cost(trees: dict[str, Path], repeat: int = 3000) -> dict[str, dict[str, float]]:
    """Microseconds of API CPU per task message, per builder and batch size, in this process."""
    from shared.settings import Settings

    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    out: dict[str, dict[str, float]] = {}
    for name in ("B", "C"):
        path = trees[name] / QUEUE_PACKAGE / "messages.py"
        spec = importlib.util.spec_from_file_location(f"_ablation_messages_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        build = module.message_builder(settings)
        out[name] = {}
        for size in (1, 8, 64):
            batch = [[str(i), "0123456"] for i in range(size)]
            call = partial(build, "rvt:replies:0123456789abcdef", batch, 5.0, "api-1@host", "t-1")
            seconds = min(timeit.repeat(call, number=repeat, repeat=3))
            out[name][str(size)] = round(seconds / repeat * 1e6, 1)
    return out


# -- the decision and the report ---------------------------------------------------------------


def paired(runs: dict[str, list[dict[str, Any]]], ours: str, theirs: str) -> float:
    """Median over runs of how much faster ``ours`` was than ``theirs`` at /predict c=16 in
    the same round (seconds apart) or side by side (at once)."""
    gains = [
        mine["predict_c16"]["rps"] / other["predict_c16"]["rps"] - 1
        for mine, other in zip(runs[ours], runs[theirs], strict=True)
    ]
    return round(statistics.median(gains), 4)


def decide(
    rounds: dict[str, list[dict[str, Any]]],
    side_by_side: dict[str, list[dict[str, Any]]],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """The rule of issue #9 on one pair per comparison (see COMPARISONS); the rest are checks."""
    rps = {name: summary[name]["predict_c16"]["rps"] for name in summary}
    cpu = {name: summary[name]["predict_c16"]["api_cpu_us_per_request"] for name in summary}
    out: dict[str, Any] = {
        "rule": f"the project's own code stays only if its /predict c=16 throughput (median over "
        f"rounds) is more than {MARGIN:.0%} higher than the library's",
    }
    for what, pairs, ours_name, library_name in COMPARISONS:
        out[what] = {"pairs": []}
        for ours, theirs in pairs:
            out[what]["pairs"].append(
                {
                    "ours": ours,
                    "theirs": theirs,
                    "faster_by_medians": round(rps[ours] / rps[theirs] - 1, 4),
                    "faster_same_round_median": paired(rounds, ours, theirs),
                    "faster_side_by_side_median": paired(side_by_side, ours, theirs),
                    "api_cpu_per_prediction_saved": round(1 - cpu[ours] / cpu[theirs], 4),
                }
            )
        hand_client = what == "message" and out["client"]["stays"] == COMPARISONS[0][2]
        index = 0 if what == "client" or hand_client else 1
        out[what]["deciding"] = index
        deciding = out[what]["pairs"][index]["faster_by_medians"]
        out[what]["stays"] = ours_name if deciding > MARGIN else library_name
    return out


def dissent(decision: dict[str, Any]) -> list[str]:
    """The figures that, taken alone, would have decided the other way."""
    out = []
    for key, _, ours_name, _ in COMPARISONS:
        ours_stays = decision[key]["stays"] == ours_name
        for pair in decision[key]["pairs"]:
            for label, figure in (
                ("by the medians", "faster_by_medians"),
                ("by the same-round ratios", "faster_same_round_median"),
                ("side by side", "faster_side_by_side_median"),
            ):
                if (pair[figure] > MARGIN) != ours_stays:
                    out.append(f"{key} {pair['ours']}/{pair['theirs']} {label} {pair[figure]:+.1%}")
    return out


def markdown(results: dict[str, Any]) -> str:
    summary, decision = results["medians"], results["decision"]
    lines = [
        f"# Ablation of the prediction path's Redis client and task message, {results['date']}",
        "",
        f"**Decision** ({decision['rule']}):",
        "",
        *(
            f"- {what}: **{decision[key]['stays']}** stays. "
            + "; ".join(
                f"{p['ours']} against {p['theirs']}"
                f"{' (deciding)' if i == decision[key]['deciding'] else ''}: "
                f"{p['faster_by_medians']:+.1%} req/s by the "
                f"medians, {p['faster_same_round_median']:+.1%} by the same-round ratios, "
                f"{p['faster_side_by_side_median']:+.1%} side by side, API CPU per prediction "
                f"{p['api_cpu_per_prediction_saved']:+.1%} saved"
                for i, p in enumerate(decision[key]["pairs"])
            )
            + "."
            for what, key in (("Redis client", "client"), ("Task message", "message"))
        ),
        "",
        "Checks that disagree with the decision (on a busy machine the margins move by several "
        "points from run to run): " + (", ".join(dissent(decision)) or "none") + ".",
        "",
        f"Medians of {results['rounds']} interleaved rounds (A, B, C, D, A, B, ...) of "
        f"{results['duration_s']:g} s per load (after one warm-up pass of {results['warmup_s']:g} s "
        "per load), the "
        f"four stacks running side by side on one {results['machine']['cores']}-core machine "
        f"shared with other work (load average {results['load_average']['start']} at the start, "
        f"{results['load_average']['end']} at the end). A is `{results['base']}`; B, C and D are A "
        "with this tree's `api/queue/`, on redis-py (`ablation-redis-py.patch`) in B and C, with "
        "A's hand-built message in B. "
        f"Made by `{results['command']}`.",
        "",
        "| variant | Redis client | task message | /healthz c=16 req/s | /predict c=16 req/s "
        "| % of /healthz | p50 / p99 c=16 ms | p50 c=1 ms | API CPU µs per prediction "
        "| requests per batch | CPU cores at c=16 (API, prediction worker, Redis) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        m = summary[variant.name]
        h, p, one = m["healthz_c16"], m["predict_c16"], m["predict_c1"]
        cores = p["cpu_cores"]
        lines.append(
            f"| {variant.name} | {variant.client} | {variant.message} | {h['rps']:,.0f} | "
            f"{p['rps']:,.0f} | {m['predict_share_of_healthz']:.0%} | "
            f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f} | {one['p50_ms']:.2f} | "
            f"{p['api_cpu_us_per_request']:.0f} | {p['requests_per_batch']:.1f} | "
            f"{cores.get('api', 0):.2f}, "
            f"{cores.get('worker-prediction', 0):.2f}, {cores.get('redis', 0):.2f} |"
        )
    side = {v.name: [r["predict_c16"] for r in results["side_by_side"][v.name]] for v in VARIANTS}
    side_medians = [
        f"{name} {statistics.median(r['rps'] for r in runs):,.0f} req/s, "
        f"{statistics.median(r['api_cpu_us_per_request'] for r in runs):.0f} µs"
        for name, runs in side.items()
    ]
    lines += [
        "",
        f"Side by side ({len(side['A'])} runs of {results['duration_s']:g} s with the four "
        "stacks loaded at once, each getting about a quarter of the machine: only the ratios mean "
        "something), medians of req/s and of API CPU per prediction: "
        + "; ".join(side_medians)
        + ".",
    ]
    cost = results["message_cost_us"]
    lines += [
        "",
        "Building one task message, in process (µs, best of 3): "
        + "; ".join(
            f"{size} request{'s' if size != '1' else ''}: hand-built {cost['B'][size]:g}, "
            f"Celery-built {cost['C'][size]:g}"
            for size in cost["B"]
        )
        + ".",
        "",
        "Per round: /predict c=16 req/s (API CPU µs per prediction), and the same-round ratios:",
        "",
        "| round | A | B | C | D | A / B | D / C | A / D | B / C | load average |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    variants = results["variants"]
    for i in range(results["rounds"]):
        r = {name: variants[name]["rounds"][i]["predict_c16"] for name in "ABCD"}
        cells = [f"{r[n]['rps']:,.0f} ({r[n]['api_cpu_us_per_request']:.0f})" for n in "ABCD"]
        ratios = [f"{r[x]['rps'] / r[y]['rps']:.2f}" for x, y in ("AB", "DC", "AD", "BC")]
        lines.append(
            f"| {i + 1} | " + " | ".join(cells + ratios) + f" | {r['A']['load_average']:g} |"
        )
    lines += [
        "",
        "The stage-by-stage history of the earlier work on this path (send_task from a thread, "
        "the lean worker, the LPUSH batches, the fast /predict route, gc.freeze, the router "
        "order), measured by the previous version of this script, is in git: "
        "`git log -p -- bench/results/ablation.md`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="5e02183", help="the tree of variant A")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--side-by-side", type=int, default=16, help="runs of all at once")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measured load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per load, once, first")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    command = "python -m bench.ablation " + " ".join(sys.argv[1:])
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rvt-ablation-"))
    stacks: dict[str, LocalStack] = {}
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": command.strip(),
        "machine": machine(),
        "base": args.base,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "variants": {},
    }
    try:
        data, models = work / "data", work / "models"
        data.mkdir()
        write_synthetic_csv(data / DATASET, 50_000, seed=1)
        trees = build_trees(args.base, work)
        for variant in VARIANTS:
            check_imports(trees[variant.name])
            stacks[variant.name] = start_stack(trees[variant.name], work, models, data)
            print(f"{variant.name}: stack up on {stacks[variant.name].base_url}", flush=True)
        train_once(stacks["A"])
        for stack in stacks.values():
            wait_predicting(stack)
        for load in LOADS:
            for stack in stacks.values():
                measure(stack, load, args.warmup)
        rounds: dict[str, list[dict[str, Any]]] = {v.name: [] for v in VARIANTS}
        for i in range(args.rounds):
            measured = run_round(stacks, args.duration)
            for name, result in measured.items():
                rounds[name].append(result)
            print(
                f"round {i + 1}: /predict c16 req/s, % of /healthz, API µs/prediction: "
                + "; ".join(
                    f"{name} {r['predict_c16']['rps']:,.0f}, {r['predict_share_of_healthz']:.0%}, "
                    f"{r['predict_c16']['api_cpu_us_per_request']:.0f}"
                    for name, r in measured.items()
                )
                + f" (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
        side_by_side: dict[str, list[dict[str, Any]]] = {v.name: [] for v in VARIANTS}
        for i in range(args.side_by_side):
            at_once = run_side_by_side(stacks, args.duration)
            for name, result in at_once.items():
                side_by_side[name].append(result)
            print(
                f"side by side {i + 1}: /predict c16 req/s "
                + ", ".join(
                    f"{name} {r['predict_c16']['rps']:,.0f}" for name, r in at_once.items()
                ),
                flush=True,
            )
        results["message_cost_us"] = message_cost(trees)
    finally:
        for stack in stacks.values():
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    results["variants"] = {
        v.name: {"client": v.client, "message": v.message, "rounds": rounds[v.name]}
        for v in VARIANTS
    }
    results["medians"] = {v.name: medians(rounds[v.name]) for v in VARIANTS}
    results["side_by_side"] = side_by_side
    results["decision"] = decide(rounds, side_by_side, results["medians"])
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "ablation.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
