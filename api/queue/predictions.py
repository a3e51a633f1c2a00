"""The API's side of the queue boundary: sending trainings, and asking for predictions.

Predictions are the hot path. Everything here runs on the event loop, without threads, and
the per-request work is a future and a deque append:

- requests are gathered into batches, one Celery task per batch: a request that arrives while
  fewer than two batches per live prediction worker are in flight goes out at once (a lone
  request waits for nothing); otherwise new requests gather until a reply frees a slot, or
  for at most ``_GATHER_SECONDS``, whichever comes first. Under load, batches grow with the
  load instead of the task rate: this is what keeps the workers' and Redis's share of two
  cores small;
- a batch is published as a Celery protocol-2 message (built by Celery,
  :mod:`api.queue.messages`) pushed with one ``LPUSH`` straight onto the prediction queue's
  Redis list (what kombu's Redis transport does for a direct publish), over a lean RESP
  connection of the API's own (:mod:`api.queue.resp`: measured faster than redis-py's asyncio
  client on this path, and reading ``REDIS_URL`` through redis-py). ``send_task`` costs about
  a millisecond of CPU per call and blocks (kombu), so it needs a thread and caps the API
  near a quarter of its do-nothing throughput; trainings, rare and not latency-bound, still
  use ``send_task``;
- replies come back over one Redis pub/sub subscription shared by every request of this
  process (not a subscription, nor a result key, per request), so nothing is stored in Redis;
  when it is lost, the requests waiting on it fail at once, and so do new ones until it is
  made again;
- one timer per process, not one per request, fails requests that got no reply within the
  timeout with a clear 503: never a hang;
- overload is shed, not queued: past ``PREDICT_MAX_WAITING`` requests waiting (gathering or in
  flight), a new one is refused at once with a 503 and ``Retry-After``. A queue without a bound
  only turns overload into timeouts for everyone; a bounded one keeps the answers it gives fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import orjson

from api.queue.messages import message_builder
from api.queue.ports import PredictionResult
from api.queue.resp import RedisAddress, RespConnection, redis_address
from shared.errors import (
    ExplanationUnavailableError,
    NoProductionModelError,
    OverloadedError,
    PredictionUnavailableError,
    VersionNotFoundError,
)
from shared.model.scoring import batch_item, encode_codes
from shared.presence import WorkerPresence
from shared.queues import PREDICTION_QUEUE, start_hint
from shared.settings import Settings
from shared.stores import REDIS_CONNECT_TIMEOUT_SECONDS, REDIS_SOCKET_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

#: How long a "no prediction worker is alive" answer is trusted before asking Redis again.
_LIVENESS_CACHE_SECONDS = 1.0
#: Largest number of records sent in one task (a single request may exceed it; it goes alone).
_MAX_BATCH_RECORDS = 2_000
#: Batches in flight per live prediction worker before new requests gather: two, so that a
#: worker finds its next batch waiting when it finishes one (measured: one per worker leaves
#: the API idle during each round trip, three make batches too small to pay for themselves).
_IN_FLIGHT_PER_WORKER = 2
#: Longest a request waits for a batch to fill while other batches are in flight.
_GATHER_SECONDS = 0.002
#: How often requests past their deadline are failed (the timeout's resolution).
_REAP_SECONDS = 0.05
#: Longest wait for a usable connection: connected (TLS included), then AUTH and SELECT answered.
_OPEN_SECONDS = REDIS_CONNECT_TIMEOUT_SECONDS + REDIS_SOCKET_TIMEOUT_SECONDS
#: How often the reply subscription sends a PING: bytes the kernel must see acknowledged
#: within ``REDIS_UNACKNOWLEDGED_TIMEOUT_MS`` (api.queue.resp), so a cut link fails the
#: subscription, and with it every request waiting, within about 0.7 s (the kernel gives up at
#: its second retransmission, some 0.6 s after the PING).
_PING_EVERY_SECONDS = 0.1
#: How long the PING's answer may take (a Redis that stopped answering, link intact).
_PING_SECONDS = 5.0
_REDIS_DOWN = "Redis is unavailable: cannot reach the workers"
#: What ``Retry-After`` says to a refused client, picked at random per refusal.
_RETRY_AFTER_SECONDS = (1, 2)
#: Shortest time between two log lines about shed requests (one line per refusal would cost
#: the CPU the shedding is there to save).
_SHED_LOG_SECONDS = 10.0


@dataclass(slots=True)
class _Pending:
    encoded: str
    records: int
    deadline: float
    future: asyncio.Future[dict[str, Any]] = field(repr=False)
    request_id: str = ""
    #: Also wants each record's contributions: a flag on this request's item in the batch, so
    #: that it shares its batch with requests that do not, and costs them nothing.
    explain: bool = False
    #: The registry version that must score it (as listed by the registry); None: production.
    #: Also a field of its item, so it shares batches with production requests.
    version: str | None = None


@dataclass(slots=True)
class _Batch:
    pendings: list[_Pending]
    deadline: float


class RedisPredictionClient:
    """One per API process; see the module docstring for the design."""

    def __init__(self, settings: Settings, presence: WorkerPresence) -> None:
        self._timeout = settings.predict_timeout_seconds
        self._presence = presence
        self._redis_url = settings.redis_url
        self._address: RedisAddress | None = None
        self._message = message_builder(settings)
        self._publisher: RespConnection | None = None
        self._channel = f"{settings.redis_prefix}:replies:{uuid.uuid4().hex}"
        self._origin = f"rvt-api-{os.getpid()}@{socket.gethostname()}"
        self._ids = itertools.count(1)
        #: Task ids: this process's prefix and a counter (unique, and no syscall per batch).
        prefix = uuid.uuid4().hex
        self._task_ids = (f"{prefix}-{n}" for n in itertools.count(1))
        self._queue: deque[_Pending] = deque()
        #: Batches sent and not yet answered, oldest first, by the id of their first request.
        self._in_flight: dict[str, _Batch] = {}
        self._max_in_flight = 1
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeup: asyncio.Event | None = None
        self._slot_free: asyncio.Event | None = None
        self._subscribed: asyncio.Event | None = None
        #: The subscription was lost, or could not be made: Redis is down until it is back.
        self._redis_lost = False
        self._workers_seen_at = 0.0
        self._max_waiting = settings.predict_max_waiting
        #: Requests admitted and not yet answered (gathering, or in a batch in flight).
        self._waiting = 0
        self._shed_logged_at = -_SHED_LOG_SECONDS
        self._shed_since_log = 0
        #: Batches and requests sent, and requests refused, for the benchmark and the tests.
        self.batches_sent = 0
        self.requests_sent = 0
        self.requests_shed = 0

    # -- public -------------------------------------------------------------------------------

    def refuse_if_full(self) -> None:
        """Raise :class:`OverloadedError` if this process already holds as many predictions
        waiting as it may (the route asks before reading the body, so a shed request costs
        no parsing; :meth:`predict` asks again)."""
        if self._waiting < self._max_waiting:
            return
        self.requests_shed += 1
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._shed_logged_at >= _SHED_LOG_SECONDS:
            log.warning(
                "overloaded: refused %d prediction request(s) with 503 since the last report "
                "(%d waiting, PREDICT_MAX_WAITING=%d)",
                self._shed_since_log,
                self._waiting,
                self._max_waiting,
            )
            self._shed_logged_at, self._shed_since_log = now, 0
        raise OverloadedError(
            f"overloaded: {self._waiting} predictions are already waiting in this API process "
            f"(PREDICT_MAX_WAITING={self._max_waiting}); retry shortly",
            # 1 or 2 s at random: clients refused together must not all come back together
            retry_after_seconds=random.choice(_RETRY_AFTER_SECONDS),
        )

    async def predict(
        self, codes: np.ndarray, explain: bool = False, version: str | None = None
    ) -> PredictionResult:
        self.refuse_if_full()
        self._start()
        if self._redis_lost:  # known down: a 503 at once, no wait on Redis per request
            raise PredictionUnavailableError(_REDIS_DOWN)
        await self._ensure_workers()
        assert self._subscribed is not None and self._wakeup is not None
        if not self._subscribed.is_set():
            if self._redis_lost:  # no second wait per request while Redis is down
                raise PredictionUnavailableError(_REDIS_DOWN)
            try:
                async with asyncio.timeout(min(self._timeout, 1.0)):
                    await self._subscribed.wait()
            except TimeoutError:
                raise PredictionUnavailableError(_REDIS_DOWN) from None
        self.refuse_if_full()  # again: the checks above may have awaited
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._queue.append(
            _Pending(
                encode_codes(codes),
                len(codes),
                loop.time() + self._timeout,
                future,
                explain=explain,
                version=version,
            )
        )
        self._waiting += 1
        self._wakeup.set()
        try:
            reply = await future
        finally:
            self._waiting -= 1
        return self._result(reply)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._fail_all("the API is shutting down")
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    # -- internals ----------------------------------------------------------------------------

    def _start(self) -> None:
        if self._tasks:
            return
        self._wakeup = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(), name="prediction-replies"),
            asyncio.create_task(self._send_batches(), name="prediction-sender"),
            asyncio.create_task(self._reap(), name="prediction-timeouts"),
        ]

    async def _connect(self) -> RespConnection:
        """A new connection; the URL is parsed (by redis-py) on first use, so that a bad one is
        a logged 503, as an unreachable Redis is."""
        if self._address is None:
            self._address = redis_address(self._redis_url, REDIS_CONNECT_TIMEOUT_SECONDS)
        return await RespConnection.open(self._address, _OPEN_SECONDS)

    async def _ensure_workers(self) -> None:
        """Fail fast with a clear message when no prediction worker is running."""
        now = time.monotonic()
        if now - self._workers_seen_at < _LIVENESS_CACHE_SECONDS:
            return
        try:
            alive = await asyncio.to_thread(self._presence.alive, PREDICTION_QUEUE)
        except Exception:
            raise PredictionUnavailableError(_REDIS_DOWN) from None
        if not alive:
            raise PredictionUnavailableError(
                f"no prediction worker is running: {start_hint(PREDICTION_QUEUE)}"
            )
        self._max_in_flight = _IN_FLIGHT_PER_WORKER * len(alive)
        self._workers_seen_at = now

    async def _listen(self) -> None:
        """The one subscription for every reply to this process; reconnects after an outage."""
        assert self._subscribed is not None
        while True:
            connection = None
            try:
                connection = await self._connect()
                async with asyncio.timeout(REDIS_SOCKET_TIMEOUT_SECONDS):
                    await connection.subscribe(self._channel, self._on_reply)
                self._redis_lost = False
                self._subscribed.set()
                while True:  # until the connection drops, or stops answering PINGs
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_PING_EVERY_SECONDS):
                            await connection.wait_closed()
                    if not connection.is_open:
                        raise ConnectionError("the connection closed")
                    async with asyncio.timeout(_PING_SECONDS):
                        await connection.command("PING")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("prediction reply channel lost: %s", exc or type(exc).__name__)
            finally:
                self._subscribed.clear()
                self._redis_lost = True
                self._fail_all("Redis connection lost while waiting for a prediction")
                if connection is not None:
                    connection.close()
                if self._publisher is not None:  # it went the same way, or soon will
                    self._publisher.close()
                    self._publisher = None
            await asyncio.sleep(0.2)

    def _on_reply(self, data: bytes) -> None:
        try:
            self._deliver(data)
        except (ValueError, KeyError, TypeError, IndexError):
            log.exception("a malformed prediction reply was dropped")

    def _deliver(self, data: bytes) -> None:
        replies = orjson.loads(data)["replies"]
        if not replies:
            return
        batch = self._in_flight.pop(replies[0]["id"], None)
        if batch is None:  # already failed by its deadline
            return
        assert self._slot_free is not None
        self._slot_free.set()
        pendings = batch.pendings
        if len(replies) != len(pendings) or any(
            p.request_id != r["id"] for p, r in zip(pendings, replies, strict=False)
        ):
            by_id = {reply["id"]: reply for reply in replies}
            replies = [by_id.get(p.request_id) for p in pendings]
        for pending, reply in zip(pendings, replies, strict=True):
            if pending.future.done():
                continue
            if reply is None:
                pending.future.set_exception(
                    PredictionUnavailableError("the prediction worker's reply lost this request")
                )
            else:
                pending.future.set_result(reply)

    def _fail(self, pendings: list[_Pending], message: str) -> None:
        for pending in pendings:
            if not pending.future.done():
                pending.future.set_exception(PredictionUnavailableError(message))

    def _fail_all(self, message: str) -> None:
        for batch in self._in_flight.values():
            self._fail(batch.pendings, message)
        self._in_flight.clear()
        self._fail(list(self._queue), message)
        self._queue.clear()
        if self._slot_free is not None:
            self._slot_free.set()

    async def _reap(self) -> None:
        """Fail requests past their deadline, queued or in flight (oldest first, so each scan
        stops at the first one still in time)."""
        loop = asyncio.get_running_loop()
        message = f"no prediction worker answered within {self._timeout:g} s"
        while True:
            await asyncio.sleep(_REAP_SECONDS)
            now = loop.time()
            while self._in_flight:
                key, batch = next(iter(self._in_flight.items()))
                if batch.deadline > now:
                    break
                del self._in_flight[key]
                self._fail(batch.pendings, message)
                assert self._slot_free is not None
                self._slot_free.set()
            while self._queue and self._queue[0].deadline <= now:
                self._fail([self._queue.popleft()], message)

    def _take_batch(self) -> list[_Pending]:
        queue = self._queue
        batch = [queue.popleft()]
        records = batch[0].records
        while queue and records + queue[0].records <= _MAX_BATCH_RECORDS:
            item = queue.popleft()
            batch.append(item)
            records += item.records
        return [p for p in batch if not p.future.done()]

    async def _send_batches(self) -> None:
        """Publish batches; while the workers are busy, let the next one gather."""
        assert self._wakeup is not None and self._slot_free is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._in_flight) >= self._max_in_flight:
                self._slot_free.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_GATHER_SECONDS):
                        await self._slot_free.wait()
                if not self._queue:
                    continue
            batch = self._take_batch()
            if batch:
                await self._publish(batch)

    async def _publish(self, batch: list[_Pending]) -> None:
        """One LPUSH; its reply is not awaited here (a failed push fails the batch through
        :meth:`_pushed`), so the next batch can go out at once."""
        for pending in batch:
            pending.request_id = str(next(self._ids))
        key = batch[0].request_id
        self._in_flight[key] = _Batch(batch, batch[0].deadline)
        message = self._message(
            self._channel,
            [
                [p.request_id, p.encoded]
                if not (p.explain or p.version)
                else batch_item(p.request_id, p.encoded, p.explain, p.version)
                for p in batch
            ],
            self._timeout,
            self._origin,
            next(self._task_ids),
        )
        try:
            publisher = self._publisher
            if publisher is None or not publisher.is_open:
                self._publisher = None
                publisher = await self._connect()
                self._publisher = publisher
            pushed = publisher.send("LPUSH", PREDICTION_QUEUE, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._push_failed(key, exc)
            return
        pushed.add_done_callback(partial(self._pushed, key))
        self.batches_sent += 1
        self.requests_sent += len(batch)

    def _pushed(self, key: str, pushed: asyncio.Future[Any]) -> None:
        if not pushed.cancelled() and pushed.exception() is not None:
            self._push_failed(key, pushed.exception())

    def _push_failed(self, key: str, exc: BaseException | None) -> None:
        log.warning("could not send a prediction task: %s", exc)
        self._workers_seen_at = 0.0
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        batch = self._in_flight.pop(key, None)
        if batch is not None:
            self._fail(batch.pendings, _REDIS_DOWN)
            assert self._slot_free is not None
            self._slot_free.set()

    @staticmethod
    def _result(reply: dict[str, Any]) -> PredictionResult:
        error = reply.get("error")
        if error is not None:
            if error.get("code") == NoProductionModelError.code:
                raise NoProductionModelError(error["message"])
            if error.get("code") == ExplanationUnavailableError.code:
                raise ExplanationUnavailableError(error["message"])
            if error.get("code") == VersionNotFoundError.code:
                raise VersionNotFoundError(error["message"])
            raise PredictionUnavailableError(error.get("message", "the prediction failed"))
        explanation = reply.get("explanation")
        return PredictionResult(
            model_version=reply["version"],
            probabilities=reply["probabilities"],
            baseline_log_odds=None if explanation is None else explanation["baseline"],
            contributions=None if explanation is None else explanation["contributions"],
        )
