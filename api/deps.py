"""Dependencies as ``Annotated`` aliases: endpoints name what they need, tests swap
:class:`~api.services.Services` wholesale.

They are ``async def`` on purpose: they do no I/O, and a sync dependency would cost every
request (``/predict`` included) a hop through the threadpool.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request

from api.queue.ports import PredictionClient, TrainingQueue
from api.services import Services
from shared.data.store import DatasetStore
from shared.jobs.store import JobStore
from shared.presence import WorkerPresence
from shared.registry.versions import ModelRegistry
from shared.settings import Settings


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise RuntimeError("services are not set up: run the app with its lifespan")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_redis(services: ServicesDep) -> redis.Redis:
    return services.redis


async def get_jobs(services: ServicesDep) -> JobStore:
    return services.jobs


async def get_presence(services: ServicesDep) -> WorkerPresence:
    return services.presence


async def get_registry(services: ServicesDep) -> ModelRegistry:
    return services.registry


async def get_datasets(services: ServicesDep) -> DatasetStore:
    return services.datasets


async def get_training_queue(services: ServicesDep) -> TrainingQueue:
    return services.training_queue


async def get_prediction_client(services: ServicesDep) -> PredictionClient:
    return services.prediction_client


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
JobStoreDep = Annotated[JobStore, Depends(get_jobs)]
PresenceDep = Annotated[WorkerPresence, Depends(get_presence)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
DatasetStoreDep = Annotated[DatasetStore, Depends(get_datasets)]
TrainingQueueDep = Annotated[TrainingQueue, Depends(get_training_queue)]
PredictionClientDep = Annotated[PredictionClient, Depends(get_prediction_client)]
