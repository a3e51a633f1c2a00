"""The API with its queue boundary replaced by in-process fakes.

Job records are real (:class:`JobStore` on fakeredis); the model registry is real, with one
real model trained once per session; the training queue and the prediction client are fakes
that record what they were asked and can be told to fail like a broker or worker outage.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.queue.ports import PredictionResult
from api.queue.predictions import RedisPredictionClient
from api.services import Services
from shared import stores
from shared.data.loader import decode_features
from shared.data.store import DatasetStore
from shared.errors import NoProductionModelError, PredictionUnavailableError
from shared.jobs.store import JobStore
from shared.model.scoring import EXPLAIN, Scorer, encode_codes, score_batch
from shared.model.training import register_run, train_model
from shared.presence import WorkerPresence
from shared.registry.versions import ModelRegistry
from shared.settings import Settings
from tests.conftest import MakeDataset

DEFAULT_DATASET = "synthetic_default.csv"


class FakeTrainingQueue:
    """Records submissions and revocations; ``fail_with`` simulates a broker outage."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.revoked: list[str] = []
        self.fail_with: BaseException | None = None

    def submit(self, job_id: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.submitted.append(job_id)

    def revoke(self, job_id: str) -> None:
        self.revoked.append(job_id)


class FakePredictionClient:
    """Scores in process with the registry's real production model (through the fitted
    pipeline, so the API's encoding is checked against the model itself). An explained
    request goes the workers' way instead: the real scorer, the batch item and reply format,
    and the real client's reading of the reply."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.calls: list[np.ndarray] = []
        self.explained: list[bool] = []
        self._scorers: dict[str, Scorer] = {}
        self.fail_with: BaseException | None = None
        #: Raised by refuse_if_full, as the real client does when overloaded.
        self.full: BaseException | None = None
        self.closed = False

    def refuse_if_full(self) -> None:
        if self.full is not None:
            raise self.full

    async def predict(self, codes: np.ndarray, explain: bool = False) -> PredictionResult:
        self.calls.append(codes)
        self.explained.append(explain)
        if self.fail_with is not None:
            raise self.fail_with
        version = self.registry.production_version()
        if version is None:
            raise NoProductionModelError("no production model yet: train one first")
        if explain:
            if version not in self._scorers:
                self._scorers[version] = Scorer(version, self.registry.load(version))
            (reply,) = score_batch(self._scorers[version], [["1", encode_codes(codes), EXPLAIN]])
            return RedisPredictionClient._result(reply)
        proba = self.registry.load(version).predict_proba(decode_features(codes))[:, 1]
        return PredictionResult(version, [float(p) for p in proba])

    async def aclose(self) -> None:
        self.closed = True


def unavailable() -> PredictionUnavailableError:
    return PredictionUnavailableError("no prediction worker answered within 5 s")


@pytest.fixture(scope="session")
def trained_registry(make_dataset: MakeDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1: a real model that passed its gate (production); v2: one that failed it."""
    root = tmp_path_factory.mktemp("trained") / "models"
    registry = ModelRegistry(root)
    dataset = make_dataset(20_000, 7)
    register_run(registry, train_model(dataset))
    failed = register_run(registry, train_model(dataset, minimums={"roc_auc": 0.999}))
    assert not failed.promoted
    return root


@dataclass
class Api:
    """One app under test, its fakes and its real stores."""

    client: TestClient
    services: Services
    queue: FakeTrainingQueue
    predictor: FakePredictionClient
    server: fakeredis.FakeServer
    settings: Settings
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def jobs(self) -> JobStore:
        return self.services.jobs

    @property
    def registry(self) -> ModelRegistry:
        return self.services.registry

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


MakeApi = Callable[..., Api]


@pytest.fixture
def make_api(
    tmp_path: Path, trained_registry: Path, make_dataset: MakeDataset
) -> Iterator[MakeApi]:
    """Build an app; ``models="trained"|"empty"``, plus any Settings overrides."""
    stack: list[TestClient] = []

    def make(models: str = "trained", **overrides: Any) -> Api:
        base = tmp_path / f"api{len(stack)}"
        models_dir = base / "models"
        if models == "trained":
            shutil.copytree(trained_registry, models_dir)
        data_dir = base / "data"
        data_dir.mkdir(parents=True)
        # The default dataset already exists, so no test waits for it to be generated.
        shutil.copy(make_dataset(20_000, 7), data_dir / DEFAULT_DATASET)
        settings = Settings(
            models_dir=models_dir,
            data_dir=data_dir,
            default_dataset=DEFAULT_DATASET,
            default_dataset_rows=2_000,
            redis_url="redis://127.0.0.1:1/0",  # never used: every client here is fake
            **overrides,
        )
        server = fakeredis.FakeServer()
        redis = fakeredis.FakeRedis(server=server)
        registry = ModelRegistry(models_dir)
        queue = FakeTrainingQueue()
        predictor = FakePredictionClient(registry)
        services = Services(
            settings=settings,
            redis=redis,
            jobs=JobStore(redis, prefix="test", lease_seconds=15),
            presence=WorkerPresence(redis, prefix="test", ttl_seconds=10),
            registry=registry,
            datasets=DatasetStore(data_dir, DEFAULT_DATASET, settings.default_dataset_rows),
            training_queue=queue,
            prediction_client=predictor,
        )
        client = TestClient(create_app(settings, services))
        client.__enter__()  # runs the lifespan
        stack.append(client)
        return Api(client, services, queue, predictor, server, settings)

    yield make
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused, as when Redis is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_real_redis(api: Api, url: str) -> Services:
    """``api``'s services, but with the real Redis client (and the stores on it) at ``url``."""
    settings = Settings(redis_url=url)
    client = stores.redis_client(settings)
    return Services(
        **{
            **vars(api.services),
            "redis": client,
            "jobs": stores.job_store(settings, client),
            "presence": stores.worker_presence(settings, client),
        }
    )


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The one error shape, with the request id echoed in the header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return dict(error)
