"""Everything the endpoints use, built once per process and injected (see :mod:`api.deps`)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from api.queue.ports import PredictionClient, TrainingQueue
from shared import stores
from shared.data.store import DatasetStore
from shared.jobs.store import JobStore
from shared.presence import WorkerPresence
from shared.registry.versions import ModelRegistry
from shared.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    presence: WorkerPresence
    registry: ModelRegistry
    datasets: DatasetStore
    training_queue: TrainingQueue
    prediction_client: PredictionClient


def build_services(settings: Settings) -> Services:
    """The real services. Nothing here talks to Redis yet: clients connect on first use."""
    # Imported here so that importing the app (and testing it with fakes) never needs Celery.
    from api.queue.predictions import RedisPredictionClient
    from api.queue.training import CeleryTrainingQueue, producer_app

    client = stores.redis_client(settings)
    presence = stores.worker_presence(settings, client)
    datasets = stores.dataset_store(settings)
    datasets.cleanup_partial_uploads()  # left by a process that died mid-upload
    return Services(
        settings=settings,
        redis=client,
        jobs=stores.job_store(settings, client),
        presence=presence,
        registry=stores.model_registry(settings),
        datasets=datasets,
        training_queue=CeleryTrainingQueue(producer_app(settings)),
        prediction_client=RedisPredictionClient(settings, presence),
    )
