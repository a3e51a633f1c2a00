"""What a worker process holds: built once, on first use, and cached for every task after it.

Built lazily rather than in ``worker_process_init`` (whose handlers must stay short), and per
process, since a prefork pool child must not share its parent's sockets.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
from functools import lru_cache

import redis

from shared import stores
from shared.errors import NoProductionModelError
from shared.jobs.runner import TrainingContext
from shared.model.production import ProductionModel
from shared.model.scoring import Scorer, ScorerCache
from shared.presence import WorkerPresence
from shared.registry.versions import ModelRegistry
from shared.registry_events import AliasAnnouncer, AliasSubscriber
from shared.settings import get_settings

__all__ = [
    "alias_announcer",
    "freeze_heap",
    "production_model",
    "redis_client",
    "scorer_for",
    "training_context",
    "version_cache",
    "worker_presence",
]


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return stores.redis_client(get_settings())


def worker_presence() -> WorkerPresence:
    return stores.worker_presence(get_settings(), redis_client())


@lru_cache(maxsize=1)
def training_context() -> TrainingContext:
    settings = get_settings()
    return TrainingContext(
        jobs=stores.job_store(settings, redis_client()),
        registry=stores.model_registry(settings),
        datasets=stores.dataset_store(settings),
        chunk_rows=settings.chunk_rows,
        worker_name=f"{socket.gethostname()}:{os.getpid()}",
        chunk_delay_seconds=settings.test_training_delay_seconds,
    )


def freeze_heap(_model: Scorer | None = None) -> None:
    """Move every object alive now (imported modules, the model) out of the garbage
    collector's reach: full collections then scan only what requests allocate, so they take
    well under a millisecond instead of tens of milliseconds (the tail of prediction
    latencies). Called after start-up and after each model load."""
    gc.freeze()


def alias_announcer() -> AliasAnnouncer:
    """How a training worker tells the serving processes that its job promoted a version."""
    return AliasAnnouncer(redis_client(), get_settings().redis_prefix)


@lru_cache(maxsize=1)
def model_registry() -> ModelRegistry:
    """The registry a prediction worker serves from (one client per process)."""
    return stores.model_registry(get_settings())


@lru_cache(maxsize=1)
def version_cache() -> ScorerCache:
    """The versions other than production this prediction worker was asked for by name."""
    registry = model_registry()
    return ScorerCache(
        registry.load,
        registry.storage.version_names,
        get_settings().model_version_cache_size,
    )


def scorer_for(version: str | None) -> Scorer:
    """The scorer of ``version`` (None: the production model); the production model itself
    when it is the version asked for, else the version cache's."""
    model = production_model()
    if version is None:
        return model.current()
    with contextlib.suppress(NoProductionModelError):
        current = model.current()
        if current.version == version:
            return current
    return version_cache().get(version)


@lru_cache(maxsize=1)
def production_model() -> ProductionModel:
    """The model this prediction worker serves: it follows the registry's production alias,
    woken by each announcement of a change (promotions, and deletions, which make the version
    cache check what it holds), and polling as the fallback."""
    settings = get_settings()
    model = ProductionModel(
        model_registry(),
        settings.model_poll_seconds,
        on_loaded=freeze_heap,
        on_checked=version_cache().revalidate,
    )
    model.start()
    # Its thread is all that needs to hold it: it lives as long as the process.
    AliasSubscriber(redis_client(), settings.redis_prefix, on_change=model.wake).start()
    return model
