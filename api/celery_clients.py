"""The API's side of the queue boundary: sending trainings, and asking for predictions.

Predictions are the hot path, so the client is built to keep the event loop free:

- Celery publishing (kombu) blocks, so it runs on one dedicated sender thread;
- concurrent requests are gathered into one task: whatever queued up while the previous send
  was in progress goes out together, and a lone request is sent at once and waits for nothing;
- replies come back over one Redis pub/sub subscription shared by every request of this
  process (not a subscription, nor a result key, per request), so nothing is stored in Redis;
- a request that gets no reply within the timeout fails with a clear 503, never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from celery import Celery

from api.ports import PredictionResult
from shared.errors import NoProductionModelError, PredictionUnavailableError
from shared.jobs import WorkerHeartbeats
from shared.scoring import encode_codes
from shared.settings import Settings
from worker.celery_app import PREDICT_TASK, PREDICTION_QUEUE, TRAIN_TASK, TRAINING_QUEUE

log = logging.getLogger(__name__)

#: How long a "no prediction worker is alive" answer is trusted before asking Redis again.
_LIVENESS_CACHE_SECONDS = 1.0
#: Largest number of records sent in one task (a single request may exceed it; it goes alone).
_MAX_BATCH_RECORDS = 2_000


class CeleryTrainingQueue:
    """Trainings go out as a task named by string: the API never imports the training code."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def submit(self, job_id: str) -> None:
        self._celery.send_task(
            TRAIN_TASK, args=[job_id], task_id=job_id, queue=TRAINING_QUEUE, retry=False
        )

    def revoke(self, job_id: str) -> None:
        # The task also checks the job record before it starts; revoking only saves it the trip.
        with contextlib.suppress(Exception):
            self._celery.control.revoke(job_id)


@dataclass
class _Pending:
    request_id: str
    encoded: str
    records: int
    future: asyncio.Future[dict[str, Any]] = field(repr=False)


class RedisPredictionClient:
    """One per API process; see the module docstring for the design."""

    def __init__(self, celery: Celery, settings: Settings, heartbeats: WorkerHeartbeats) -> None:
        self._celery = celery
        self._timeout = settings.predict_timeout_seconds
        self._heartbeats = heartbeats
        self._redis = aioredis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=1.0, health_check_interval=10
        )
        self._channel = f"{settings.redis_prefix}:replies:{uuid.uuid4().hex}"
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="celery-send")
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._queue: asyncio.Queue[_Pending] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._workers_seen_at = 0.0

    # -- public -------------------------------------------------------------------------------

    async def predict(self, codes: np.ndarray) -> PredictionResult:
        self._start()
        await self._ensure_workers()
        if not self._subscribed.is_set():
            try:
                await asyncio.wait_for(self._subscribed.wait(), timeout=min(self._timeout, 1.0))
            except TimeoutError:
                raise PredictionUnavailableError(
                    "Redis is unavailable: cannot reach the workers"
                ) from None
        loop = asyncio.get_running_loop()
        pending = _Pending(uuid.uuid4().hex, encode_codes(codes), len(codes), loop.create_future())
        self._waiting[pending.request_id] = pending.future
        assert self._queue is not None
        self._queue.put_nowait(pending)
        try:
            reply = await asyncio.wait_for(pending.future, timeout=self._timeout)
        except TimeoutError:
            raise PredictionUnavailableError(
                f"no prediction worker answered within {self._timeout:g} s"
            ) from None
        finally:
            self._waiting.pop(pending.request_id, None)
        return self._result(reply)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._sender.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    # -- internals ----------------------------------------------------------------------------

    def _start(self) -> None:
        if self._tasks:
            return
        self._queue = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._listen(), name="prediction-replies"),
            asyncio.create_task(self._send_batches(), name="prediction-sender"),
        ]

    async def _ensure_workers(self) -> None:
        """Fail fast with a clear message when no prediction worker is running."""
        now = time.monotonic()
        if now - self._workers_seen_at < _LIVENESS_CACHE_SECONDS:
            return
        try:
            alive = await asyncio.to_thread(self._heartbeats.alive, PREDICTION_QUEUE)
        except Exception:
            raise PredictionUnavailableError(
                "Redis is unavailable: cannot reach the workers"
            ) from None
        if not alive:
            raise PredictionUnavailableError(
                "no prediction worker is running: start one with "
                "`celery -A worker worker -Q prediction`"
            )
        self._workers_seen_at = now

    async def _listen(self) -> None:
        """The one subscription for every reply to this process; reconnects after an outage."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("prediction reply channel lost: %s", exc)
            finally:
                self._subscribed.clear()
                self._fail_waiting("Redis connection lost while waiting for a prediction")
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(0.2)

    def _deliver(self, data: bytes) -> None:
        for reply in json.loads(data)["replies"]:
            future = self._waiting.get(reply["id"])
            if future is not None and not future.done():
                future.set_result(reply)

    def _fail_waiting(self, message: str) -> None:
        for future in list(self._waiting.values()):
            if not future.done():
                future.set_exception(PredictionUnavailableError(message))

    async def _send_batches(self) -> None:
        """Everything that queued up during the previous send goes out as one task."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            records = batch[0].records
            while not self._queue.empty() and records < _MAX_BATCH_RECORDS:
                item = self._queue.get_nowait()
                batch.append(item)
                records += item.records
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            try:
                await loop.run_in_executor(self._sender, self._publish, live)
            except Exception as exc:
                log.warning("could not send a prediction task: %s", exc)
                self._workers_seen_at = 0.0
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(
                            PredictionUnavailableError(
                                "Redis is unavailable: cannot reach the workers"
                            )
                        )

    def _publish(self, batch: list[_Pending]) -> None:
        self._celery.send_task(
            PREDICT_TASK,
            args=[self._channel, [[p.request_id, p.encoded] for p in batch]],
            queue=PREDICTION_QUEUE,
            expires=self._timeout,
            retry=False,
        )

    @staticmethod
    def _result(reply: dict[str, Any]) -> PredictionResult:
        error = reply.get("error")
        if error is not None:
            if error.get("code") == NoProductionModelError.code:
                raise NoProductionModelError(error["message"])
            raise PredictionUnavailableError(error.get("message", "the prediction failed"))
        return PredictionResult(
            model_version=reply["version"], probabilities=reply["probabilities"]
        )
