"""Liveness and readiness, for orchestrators and for people."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import PresenceDep, RedisDep
from api.schemas.health import Health, Readiness, ReadyChecks, RedisCheck, WorkersCheck
from shared.presence import WorkerPresence
from shared.queues import PREDICTION_QUEUE, TRAINING_QUEUE, start_hint

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    """No I/O at all, and async so it never waits behind a busy threadpool: a liveness probe
    that failed because Redis is down would restart a process that is fine."""
    return Health()


def _workers(presence: WorkerPresence, queue: str, redis_ok: bool) -> WorkersCheck:
    if not redis_ok:
        return WorkersCheck(ok=False, workers=[], detail="unknown: Redis is unavailable")
    try:
        workers = presence.alive(queue)
    except Exception as exc:
        return WorkersCheck(ok=False, workers=[], detail=f"unknown: {type(exc).__name__}")
    if not workers:
        detail = f"no live worker consumes the {queue!r} queue; " + start_hint(queue)
        return WorkersCheck(ok=False, workers=[], detail=detail)
    return WorkersCheck(ok=True, workers=workers)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {"model": Readiness, "description": "Not ready: `checks` names what is missing."}
    },
    summary="Ready to take trainings and predictions",
)
def readyz(response: Response, redis: RedisDep, presence: PresenceDep) -> Readiness:
    """Sync on purpose: the Redis calls block (bounded by the client's socket timeouts of about
    a second), so they run in the threadpool and a Redis outage is a quick 503, never a hang."""
    try:
        redis.ping()
        redis_check = RedisCheck(ok=True, detail="PING answered")
    except Exception as exc:
        redis_check = RedisCheck(ok=False, detail=f"Redis is unavailable ({type(exc).__name__})")
    checks = ReadyChecks(
        redis=redis_check,
        training_workers=_workers(presence, TRAINING_QUEUE, redis_check.ok),
        prediction_workers=_workers(presence, PREDICTION_QUEUE, redis_check.ok),
    )
    ready = checks.redis.ok and checks.training_workers.ok and checks.prediction_workers.ok
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, checks=checks)
