"""Every process (API, workers, CLI) builds its Redis client and its stores here, from the
settings, so that all of them fail the same way when something is down."""

from __future__ import annotations

import socket
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.data.store import DatasetStore
from shared.jobs.store import JobStore
from shared.presence import WorkerPresence
from shared.registry.versions import ModelRegistry
from shared.settings import Settings
from shared.storage.location import S3Location
from shared.storage.s3 import ObjectStore, s3_client
from shared.storage.s3_datasets import S3DatasetFiles
from shared.storage.s3_registry import S3RegistryStorage

__all__ = [
    "REDIS_CONNECT_TIMEOUT_SECONDS",
    "REDIS_SOCKET_TIMEOUT_SECONDS",
    "REDIS_UNACKNOWLEDGED_TIMEOUT_MS",
    "dataset_store",
    "job_store",
    "model_registry",
    "object_store",
    "redis_client",
    "worker_presence",
]

#: Short, so that a Redis outage is a quick 503 (and /readyz answers in about a second), not a
#: request hanging on the kernel's TCP timeouts. Every command the project sends is O(1) or a
#: short Lua script.
REDIS_CONNECT_TIMEOUT_SECONDS = 0.5
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0
#: A TCP connection whose sent bytes the other end has not acknowledged for this long is dead
#: (``TCP_USER_TIMEOUT``): a cut link then shows in half a second, in the kernel, however busy
#: the process is, instead of after the kernel's retransmissions (many minutes). An answer may
#: take longer than this; only the acknowledgement of the bytes may not.
REDIS_UNACKNOWLEDGED_TIMEOUT_MS = 500


def redis_client(settings: Settings) -> redis.Redis:
    """A sync client that fails fast: one immediate retry (for a pooled connection that went
    stale when Redis restarted) instead of redis-py's default of several with backoff."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        # redis-py sets these options (at the TCP level) only with keepalive on
        socket_keepalive=True,
        socket_keepalive_options={socket.TCP_USER_TIMEOUT: REDIS_UNACKNOWLEDGED_TIMEOUT_MS},
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


def object_store(settings: Settings, location: S3Location) -> ObjectStore:
    """The objects under ``location``, on ``S3_ENDPOINT_URL`` with the ``AWS_*`` credentials."""
    secret = settings.aws_secret_access_key
    client = s3_client(
        settings.s3_endpoint_url,
        settings.aws_region,
        settings.aws_access_key_id,
        secret.get_secret_value() if secret is not None else None,
    )
    return ObjectStore(client, location)


def model_registry(settings: Settings) -> ModelRegistry:
    """The registry in ``MODELS_DIR``: a local folder, or an ``s3://`` location."""
    location = settings.models_dir
    if isinstance(location, S3Location):
        return ModelRegistry(S3RegistryStorage(object_store(settings, location)))
    return ModelRegistry(location)


def dataset_store(settings: Settings) -> DatasetStore:
    """The datasets in ``DATA_DIR``: a local folder, or an ``s3://`` location."""
    location = settings.data_dir
    files: Path | S3DatasetFiles = (
        location
        if isinstance(location, Path)
        else (S3DatasetFiles(object_store(settings, location)))
    )
    return DatasetStore(files, settings.default_dataset, settings.default_dataset_rows)
