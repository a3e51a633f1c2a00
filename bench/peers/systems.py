"""Each system of the comparison: how it is started, what one request is, how its answer reads.

Every peer serves the registry version the suite trained, from a process group of its own
(launched through the stack, so the suite's CPU meter sees it), bound to loopback on free ports,
with its per-request logging off: MLServer with ``debug: false`` (its uvicorn access log),
BentoML with ``logging.access.enabled: false``. BentoML's usage tracking is turned off too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peers import venvs
from shared.data.schema import FEATURE_COLUMNS

MODEL_NAME = "death_yn"
#: Adaptive batching of the batching MLServer variant: at most 16 requests, waiting 2 ms.
MAX_BATCH_SIZE = 16
MAX_BATCH_TIME_S = 0.002

Records = Sequence[dict[str, str]]


@dataclass(frozen=True)
class System:
    """One line of the comparison."""

    name: str
    title: str
    #: "ours", "floor" (our /healthz), "stock" (the pipeline's predict_proba) or "table"
    kind: str
    #: "ours", "mlserver" or "bentoml" (which venv a peer runs in)
    framework: str
    path: str
    body: Callable[[Records], bytes]
    #: P(death_yn = Yes) of each record, read from a response body
    read: Callable[[Any], list[float]]

    @property
    def peer(self) -> bool:
        return self.framework != "ours"


def records_body(records: Records) -> bytes:
    """``/predict``'s body; BentoML's services take the same."""
    return json.dumps({"records": list(records)}, separators=(",", ":")).encode()


def v2_body(records: Records) -> bytes:
    """MLServer's V2 request: one BYTES input per column, decoded by the stock runtime as a
    DataFrame (``content_type: pd``) of strings, asking for ``predict_proba``."""
    inputs = [
        {
            "name": col,
            "datatype": "BYTES",
            "shape": [len(records)],
            "parameters": {"content_type": "str"},
            "data": [r[col] for r in records],
        }
        for col in FEATURE_COLUMNS
    ]
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": inputs,
        "outputs": [{"name": "predict_proba"}],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def read_predictions(answer: Any) -> list[float]:
    return [float(p["probability"]) for p in answer["predictions"]]


def read_v2(answer: Any) -> list[float]:
    """The stock runtime answers ``predict_proba`` (n x 2, row-major), the table runtime
    ``probability`` (n)."""
    outputs = {o["name"]: o for o in answer["outputs"]}
    if "predict_proba" in outputs:
        out = outputs["predict_proba"]
        if out["shape"][-1] != 2:
            raise ValueError(f"predict_proba of shape {out['shape']}, expected (n, 2)")
        return [float(p) for p in out["data"][1::2]]
    if "probability" in outputs:
        return [float(p) for p in outputs["probability"]["data"]]
    raise ValueError(f"no probability among the outputs {sorted(outputs)}")


def _get_body(records: Records) -> bytes:
    raise TypeError("GET /healthz takes no body")


_INFER = f"/v2/models/{MODEL_NAME}/infer"
SYSTEMS: tuple[System, ...] = (
    System("predict", "ours: POST /predict", "ours", "ours", "/predict", records_body, read_predictions),
    System("healthz", "ours: GET /healthz (floor)", "floor", "ours", "/healthz", _get_body, lambda a: []),
    System("mlserver_sklearn", "MLServer, stock sklearn runtime", "stock", "mlserver", _INFER, v2_body, read_v2),
    System(
        "mlserver_sklearn_batching",
        f"MLServer, stock sklearn, adaptive batching {MAX_BATCH_SIZE} / {MAX_BATCH_TIME_S * 1000:g} ms",
        "stock", "mlserver", _INFER, v2_body, read_v2,
    ),
    System("mlserver_table", "MLServer, custom runtime: our table scorer", "table", "mlserver", _INFER, v2_body, read_v2),
    System("bentoml_sklearn", "BentoML, stock (predict_proba on a DataFrame)", "stock", "bentoml", "/predict", records_body, read_predictions),
    System("bentoml_table", "BentoML, custom: our table scorer", "table", "bentoml", "/predict", records_body, read_predictions),
)  # fmt: skip
BY_NAME = {s.name: s for s in SYSTEMS}


@dataclass(frozen=True)
class Launch:
    """What the suite's stack launches for a peer, and the URL that says it is ready."""

    command: list[str]
    env: dict[str, str]
    ready_path: str


def launch(
    system: System, folder: Path, port: int, ports: tuple[int, int], artifact: Path,
    models_dir: Path, version: str,
) -> Launch:  # fmt: skip
    """Write ``system``'s configuration under ``folder`` and say how to start it on ``port``
    (``ports``: MLServer's gRPC and metrics ports, also on loopback). ``artifact`` is the
    registry's checksum-verified model.joblib that the stock MLServer runtime unpickles; every
    other peer loads ``version`` through the registry itself."""
    folder.mkdir(parents=True, exist_ok=True)
    python = venvs.venv_python(system.framework)
    env = {
        "PYTHONPATH": str(venvs.ROOT),
        "RVT_PEER_MODELS": str(models_dir),
        "RVT_PEER_VERSION": version,
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(folder / "bentoml-home"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if system.framework == "mlserver":
        _mlserver_folder(system, folder, port, ports, artifact)
        return Launch(
            [str(python.parent / "mlserver"), "start", str(folder)],
            env,
            f"/v2/models/{MODEL_NAME}/ready",
        )
    if system.framework == "bentoml":
        service = {
            "bentoml_sklearn": "bench.peers.apps.bentoml_stock:Stock",
            "bentoml_table": "bench.peers.apps.bentoml_table:Table",
        }[system.name]
        command = [
            str(python.parent / "bentoml"), "serve", service, "--host", "127.0.0.1",
            "--port", str(port), "--working-dir", str(venvs.ROOT), "--do-not-track",
        ]  # fmt: skip
        return Launch(command, env, "/readyz")
    raise ValueError(f"{system.name} is not a peer")


def _mlserver_folder(
    system: System, folder: Path, port: int, ports: tuple[int, int], artifact: Path
) -> None:
    settings = {
        "debug": False,  # True (the default) logs every request
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": ports[0],
        "metrics_port": ports[1],
        "metrics_dir": str(folder / ".metrics"),
        "environments_dir": str(folder / ".envs"),
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    model: dict[str, Any] = {"name": MODEL_NAME}
    if system.name == "mlserver_table":
        model["implementation"] = "bench.peers.apps.mlserver_table.TableRuntime"
    else:
        model["implementation"] = "mlserver_sklearn.SKLearnModel"
        model["parameters"] = {"uri": str(artifact)}
    if system.name == "mlserver_sklearn_batching":
        model["max_batch_size"] = MAX_BATCH_SIZE
        model["max_batch_time"] = MAX_BATCH_TIME_S
    (folder / MODEL_NAME).mkdir(exist_ok=True)
    (folder / MODEL_NAME / "model-settings.json").write_text(json.dumps(model, indent=2))
