"""Every process (API, workers, CLI) builds its Redis client and its stores here, from the
settings, so that all of them fail the same way when something is down."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.data.store import DatasetStore
from shared.jobs.store import JobStore
from shared.presence import WorkerPresence
from shared.registry.versions import ModelRegistry
from shared.settings import Settings

__all__ = [
    "REDIS_CONNECT_TIMEOUT_SECONDS",
    "REDIS_SOCKET_TIMEOUT_SECONDS",
    "dataset_store",
    "job_store",
    "model_registry",
    "redis_client",
    "worker_presence",
]

#: Short, so that a Redis outage is a quick 503 (and /readyz answers in about a second), not a
#: request hanging on the kernel's TCP timeouts. Every command the project sends is O(1) or a
#: short Lua script.
REDIS_CONNECT_TIMEOUT_SECONDS = 0.5
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0


def redis_client(settings: Settings) -> redis.Redis:
    """A sync client that fails fast: one immediate retry (for a pooled connection that went
    stale when Redis restarted) instead of redis-py's default of several with backoff."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def job_store(settings: Settings, client: redis.Redis) -> JobStore:
    return JobStore(
        client,
        prefix=settings.redis_prefix,
        ttl_seconds=settings.job_ttl_seconds,
        lease_seconds=settings.job_lease_seconds,
    )


def worker_presence(settings: Settings, client: redis.Redis) -> WorkerPresence:
    return WorkerPresence(
        client, prefix=settings.redis_prefix, ttl_seconds=settings.worker_presence_ttl_seconds
    )


def model_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.models_dir)


def dataset_store(settings: Settings) -> DatasetStore:
    return DatasetStore(settings.data_dir, settings.default_dataset, settings.default_dataset_rows)
