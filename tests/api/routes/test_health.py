"""/healthz and /readyz."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import Api, closed_port, with_real_redis


def _beat(api: Api, *queues: str) -> None:
    for queue in queues:
        api.services.presence.announce(queue, f"{queue}-1@host")


def test_healthz_needs_no_redis(api: Api) -> None:
    api.server.connected = False
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_redis_answers_and_both_queues_have_workers(api: Api) -> None:
    _beat(api, "training", "prediction")
    response = api.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["training_workers"] == {
        "ok": True, "workers": ["training-1@host"], "detail": None,
    }  # fmt: skip
    assert body["checks"]["prediction_workers"]["workers"] == ["prediction-1@host"]


def test_not_ready_names_the_queue_without_workers(api: Api) -> None:
    _beat(api, "training")
    response = api.client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["training_workers"]["ok"] is True
    assert checks["prediction_workers"]["ok"] is False
    assert "'prediction'" in checks["prediction_workers"]["detail"]


def test_a_worker_that_left_no_longer_counts(api: Api) -> None:
    _beat(api, "training", "prediction")
    api.services.presence.leave("training", "training-1@host")
    body = api.client.get("/readyz").json()
    assert body["ready"] is False and body["checks"]["training_workers"]["ok"] is False


def test_redis_down_is_a_quick_503(api: Api) -> None:
    """Timed against a real refused connection (the real client, nothing on its port), not a
    fake that fails at once: the client's own timeouts are what keep the probe quick."""
    services = with_real_redis(api, f"redis://127.0.0.1:{closed_port()}/0")
    with TestClient(create_app(api.settings, services)) as http:
        started = time.monotonic()
        response = http.get("/readyz")
        took = time.monotonic() - started
    services.redis.close()
    assert took < 2, took
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["training_workers"]["ok"] is False
    assert "Redis" in body["checks"]["training_workers"]["detail"]
