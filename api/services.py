"""Everything the endpoints use, built once per process and injected (see :mod:`api.deps`)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.ports import PredictionClient, TrainingQueue
from shared.datasets import DatasetStore
from shared.jobs import JobStore, WorkerHeartbeats
from shared.registry import ModelRegistry
from shared.settings import Settings

#: Short, so that a Redis outage is a quick 503 (and /readyz answers in about a second), not a
#: request hanging on the kernel's TCP timeouts.
REDIS_CONNECT_TIMEOUT_SECONDS = 0.5
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    heartbeats: WorkerHeartbeats
    registry: ModelRegistry
    datasets: DatasetStore
    training_queue: TrainingQueue
    prediction_client: PredictionClient


def redis_client(settings: Settings) -> redis.Redis:
    """A sync client that fails fast: one immediate retry (for a pooled connection that went
    stale when Redis restarted) instead of redis-py's default ten with backoff."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def build_services(settings: Settings) -> Services:
    """The real services. Nothing here talks to Redis yet: clients connect on first use."""
    # Imported here so that importing the app (and testing it with fakes) never needs Celery.
    from api.celery_clients import CeleryTrainingQueue, RedisPredictionClient
    from worker.celery_app import create_celery

    client = redis_client(settings)
    heartbeats = WorkerHeartbeats(
        client, prefix=settings.redis_prefix, ttl_seconds=settings.worker_heartbeat_ttl_seconds
    )
    celery = create_celery(settings)
    datasets = DatasetStore(
        settings.data_dir, settings.default_dataset, settings.default_dataset_rows
    )
    datasets.cleanup_partial_uploads()  # left by a process that died mid-upload
    return Services(
        settings=settings,
        redis=client,
        jobs=JobStore(
            client,
            prefix=settings.redis_prefix,
            ttl_seconds=settings.job_ttl_seconds,
            lease_seconds=settings.job_lease_seconds,
        ),
        heartbeats=heartbeats,
        registry=ModelRegistry(settings.models_dir),
        datasets=datasets,
        training_queue=CeleryTrainingQueue(celery),
        prediction_client=RedisPredictionClient(celery, settings, heartbeats),
    )
