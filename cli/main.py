"""``rvt``: the command line. ``rvt train`` is the inline, foreground half of the contrast."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from api.security import API_KEY_HEADER
from cli.console import err, fail, fmt, one_line_errors, out, progress_columns
from cli.demo import demo
from cli.options import (
    ClassWeightOpt,
    COpt,
    EstimatorOpt,
    EstimatorOption,
    L2RegularizationOpt,
    LearningRateOpt,
    MaxDepthOpt,
    MaxIterOpt,
    MaxLeafNodesOpt,
    model_params,
)
from cli.remote import api_app
from cli.stack import LocalStack, StackError
from shared import registry_events, stores
from shared.data.store import DatasetStore
from shared.data.synthetic import write_synthetic_csv
from shared.errors import InvalidParameterError
from shared.model.evaluation import KEY_METRICS
from shared.model.pipeline import estimator_params
from shared.model.training import Progress as TrainingProgress
from shared.model.training import SplitParams, register_run, train_model
from shared.registry.versions import ModelRegistry, ModelVersion
from shared.settings import Settings, get_settings
from shared.storage.location import StoreLocation

app = typer.Typer(
    help="runtime-v-training: train a CDC death_yn model inline, or run it as a service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(api_app, name="api")
app.command("demo")(demo)


def _registry(settings: Settings) -> ModelRegistry:
    return stores.model_registry(settings)


def _datasets(settings: Settings) -> DatasetStore:
    return stores.dataset_store(settings)


def _announcer(settings: Settings) -> registry_events.AliasAnnouncer | None:
    """Where alias changes made here are announced: the service's Redis when ``REDIS_URL``
    is set. Unset, there is no service's Redis to tell (``rvt serve`` runs a private one on a
    free port): serving processes then find the change at their next poll of the alias."""
    if "redis_url" not in settings.model_fields_set:
        return None
    return registry_events.AliasAnnouncer(stores.redis_client(settings), settings.redis_prefix)


def _absolute(location: StoreLocation) -> StoreLocation:
    """A folder made absolute (the stack's processes run elsewhere); an s3:// URL as it is."""
    return location.resolve() if isinstance(location, Path) else location


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[TrainingProgress], None]]:
    """A bar on stderr, only when stderr is a terminal: pipes and --json stay clean."""
    if not enabled:
        yield lambda _progress: None
        return
    with Progress(*progress_columns(), console=err, transient=True) as bar:
        task = bar.add_task("reading", total=1.0, rows=0)

        def update(progress: TrainingProgress) -> None:
            bar.update(
                task,
                completed=progress.fraction,
                description=progress.stage,
                rows=progress.rows_read,
            )

        yield update


@data_app.command("generate")
@one_line_errors
def data_generate(
    rows: Annotated[int, typer.Option(min=1, help="Number of rows to write.")] = 200_000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same file).")] = 0,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="CSV file to write (default: in DATA_DIR).")
    ] = None,
) -> None:
    """Write a synthetic CDC-schema dataset, deterministic for a seed and row count."""
    if out_file is None:
        data_dir = get_settings().data_dir
        if not isinstance(data_dir, Path):
            raise InvalidParameterError("DATA_DIR is an object store: name a local file with --out")
        out_file = data_dir / "synthetic.csv"
    started = time.perf_counter()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_synthetic_csv(out_file, rows, seed=seed)
    took = time.perf_counter() - started
    err.print(f"wrote {rows:,} rows to {out_file} in {took:.1f}s", highlight=False)


@data_app.command("list")
@one_line_errors
def data_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the datasets in DATA_DIR."""
    infos = _datasets(get_settings()).list()
    rows = [
        {"name": i.name, "size_bytes": i.size_bytes, "modified_at": i.modified_at} for i in infos
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "size", "modified")
    for info in infos:
        table.add_row(info.name, f"{info.size_bytes:,}", info.modified_at)
    out.print(table)


@app.command()
@one_line_errors
def train(
    data: Annotated[
        Path | None, typer.Option(help="CSV to train on (default: the synthetic dataset).")
    ] = None,
    estimator: EstimatorOpt = EstimatorOption.logistic_regression,
    c: COpt = None,
    class_weight: ClassWeightOpt = None,
    max_iter: MaxIterOpt = None,
    learning_rate: LearningRateOpt = None,
    max_leaf_nodes: MaxLeafNodesOpt = None,
    max_depth: MaxDepthOpt = None,
    l2_regularization: L2RegularizationOpt = None,
    test_size: Annotated[float, typer.Option(help="Share of rows held out.")] = 0.2,
    random_state: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 42,
    min_roc_auc: Annotated[
        float | None, typer.Option(help="Quality gate (default: MIN_ROC_AUC).")
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Promote if the gate passes.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the new version's metadata.json only.")
    ] = False,
) -> None:
    """Train inline, in the foreground: the way the prototype did it, measured."""
    settings = get_settings()
    params = estimator_params(
        estimator.value,
        model_params(
            c, class_weight, max_iter, learning_rate, max_leaf_nodes, max_depth, l2_regularization
        ),
    )
    split = SplitParams(test_size=test_size, random_state=random_state)
    minimums = {"roc_auc": settings.min_roc_auc if min_roc_auc is None else min_roc_auc}
    datasets = _datasets(settings)
    dataset = data if data is not None else datasets.source(datasets.ensure_default())
    started = time.perf_counter()
    with _progress_bar(enabled=not as_json and sys.stderr.isatty()) as on_progress:
        run = train_model(dataset, params, split, minimums, on_progress, settings.chunk_rows)
        registered = register_run(_registry(settings), run, promote, on_progress)
    wall = time.perf_counter() - started
    if registered.promoted and (announcer := _announcer(settings)) is not None:
        announcer.announce(registered.version.version, "promote")
    metadata = registered.version.metadata
    if as_json:
        print(json.dumps(metadata, indent=2, sort_keys=True))
        return
    _print_summary(metadata, registered.promoted, registered.save_seconds, wall)


def _print_summary(
    metadata: dict[str, Any], promoted: bool, save_seconds: float, wall: float
) -> None:
    rows = metadata["rows"]
    metrics = metadata["metrics"]
    out.print(
        f"[bold]{metadata['version']}[/] ({metadata.get('estimator', 'logistic_regression')}) "
        f"trained on {metadata['dataset']['name']}: "
        f"{rows['read']:,} rows read, {rows['labelled']:,} labelled "
        f"({rows['train']:,} train / {rows['test']:,} test), "
        f"{rows['left_out_unlabelled']:,} left out (no Yes/No label)"
    )
    table = Table("metric", "value", title="held-out metrics")
    for name in (*KEY_METRICS, "positive_rate", "observed_rate"):
        why = metrics["undefined"].get(name)
        table.add_row(name, fmt(metrics[name]) + (f"  ({why})" if why else ""))
    cm = metrics["confusion_matrix"]
    table.add_row("confusion", f"tn={cm['tn']:,} fp={cm['fp']:,} fn={cm['fn']:,} tp={cm['tp']:,}")
    out.print(table)
    stages = Table("stage", "seconds", title="time per stage")
    for stage, seconds in {**metadata["stage_seconds"], "save": save_seconds}.items():
        stages.add_row(stage, f"{seconds:.2f}")
    stages.add_row("[bold]total wall[/]", f"{wall:.2f}")
    out.print(stages)
    gate = metadata["gate"]
    if promoted:
        out.print(f"gate passed; {metadata['version']} is now production")
    elif gate["passed"]:
        out.print(f"gate passed; {metadata['version']} saved, not promoted (--no-promote)")
    else:
        out.print(f"gate failed, {metadata['version']} not promoted: " + "; ".join(gate["reasons"]))


def _version_row(info: ModelVersion, production: str | None) -> dict[str, Any]:
    meta = info.metadata
    return {
        "version": info.version,
        "production": info.version == production,
        "created_at": meta.get("created_at"),
        "dataset": meta.get("dataset", {}).get("name"),
        "rows": meta.get("rows", {}).get("read"),
        "roc_auc": meta.get("metrics", {}).get("roc_auc"),
        "gate_passed": meta.get("gate", {}).get("passed"),
    }


@models_app.command("list")
@one_line_errors
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every version, oldest first, and which one is production."""
    registry = _registry(get_settings())
    production = registry.production_version()
    rows = [_version_row(info, production) for info in registry.list_versions()]
    if as_json:
        print(json.dumps({"production": production, "versions": rows}, indent=2))
        return
    table = Table("version", "created", "dataset", "rows", "roc_auc", "gate", "production")
    for row in rows:
        table.add_row(
            row["version"],
            str(row["created_at"]),
            str(row["dataset"]),
            f"{row['rows']:,}" if row["rows"] is not None else "",
            fmt(row["roc_auc"]),
            "passed" if row["gate_passed"] else "failed",
            "*" if row["production"] else "",
        )
    out.print(table)


@models_app.command("show")
@one_line_errors
def models_show(version: str) -> None:
    """A version's metadata.json."""
    print(json.dumps(_registry(get_settings()).get(version).metadata, indent=2, sort_keys=True))


@models_app.command("promote")
@one_line_errors
def models_promote(
    version: str,
    force: Annotated[bool, typer.Option(help="Promote even if it failed the gate.")] = False,
) -> None:
    """Make a version production; serving processes follow within a second (announced on
    REDIS_URL when it is set, else at their next poll)."""
    settings = get_settings()
    state = registry_events.promote(_registry(settings), _announcer(settings), version, force)
    err.print(f"production is now {state.version}", highlight=False)


@models_app.command("rollback")
@one_line_errors
def models_rollback() -> None:
    """Go back to the previous production version."""
    settings = get_settings()
    state = registry_events.rollback(_registry(settings), _announcer(settings))
    err.print(f"production is now {state.version}", highlight=False)


@app.command()
@one_line_errors
def serve(
    port: Annotated[int | None, typer.Option(help="API port (default: PORT).")] = None,
) -> None:
    """Run the whole service on this machine: Redis (a private one unless REDIS_URL is set),
    a training worker, a prediction worker and the API (API_WORKERS processes). Ctrl-C stops
    everything."""
    settings = get_settings()
    user_redis = settings.redis_url if "redis_url" in settings.model_fields_set else None
    stack = LocalStack(
        models_dir=_absolute(settings.models_dir),
        data_dir=_absolute(settings.data_dir),
        redis_url=user_redis,
        host=settings.host,
        port=port or settings.port,
        cwd=Path.cwd(),
    )
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)  # the terminal closed: stop, leave no orphans
    try:
        if user_redis is None:
            err.print(f"starting a private Redis for this run ({stack.start_redis()})")
        stack.start(timeout=120)
        # a placeholder, never the key: this goes to a terminal, and maybe to a log
        key_header = f" -H '{API_KEY_HEADER}: <API_KEY>'" if settings.api_key_value else ""
        err.print(
            f"\n[bold]runtime-v-training is up[/]\n"
            f"  API        {stack.base_url} ({settings.api_workers} process(es): API_WORKERS)\n"
            f"  API docs   {stack.base_url}/docs\n"
            f"  readiness  {stack.base_url}/readyz\n"
            f"  Redis      {stack.redis_url}\n"
            f"  train:     curl -X POST {stack.base_url}/train{key_header}\n"
            f"Ctrl-C stops every process started here.\n"
        )
        while not stopping:
            dead = [p.name for p in stack.processes.values() if not p.alive()]
            if dead:
                err.print(f"{', '.join(dead)} stopped unexpectedly; shutting down")
                raise typer.Exit(1)
            time.sleep(0.5)
    except StackError as exc:
        fail(str(exc))
    finally:
        err.print("stopping...")
        stack.stop()


def main() -> None:
    app()
