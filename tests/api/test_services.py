"""The real Redis client fails fast, so an outage is a quick 503 and /readyz never hangs."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from fastapi.testclient import TestClient

from api.main import create_app
from api.services import build_services
from shared.settings import Settings
from tests.api.conftest import Api, assert_error, closed_port, with_real_redis


def test_readyz_and_jobs_answer_quickly_with_nothing_on_the_redis_port(api: Api) -> None:
    services = with_real_redis(api, f"redis://127.0.0.1:{closed_port()}/0")
    client = services.redis
    with TestClient(create_app(api.settings, services)) as http:
        started = time.monotonic()
        ready = http.get("/readyz")
        assert time.monotonic() - started < 2
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"]["ok"] is False
        started = time.monotonic()
        assert_error(http.get("/jobs"), 503, "redis_unavailable")
        assert time.monotonic() - started < 2
    client.close()


def test_the_real_services_connect_to_nothing_until_used_and_fail_fast(tmp_path: Path) -> None:
    """build_services with the real Celery and Redis clients, and no Redis on the port."""
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        models_dir=tmp_path / "models",
        data_dir=tmp_path / "data",
        predict_timeout_seconds=1.0,
    )
    services = build_services(settings)
    assert isinstance(services.redis, redis.Redis)
    with TestClient(create_app(settings)) as http:
        assert http.get("/healthz").status_code == 200
        started = time.monotonic()
        assert http.get("/readyz").status_code == 503
        assert_error(http.get("/jobs"), 503, "redis_unavailable")
        assert_error(
            http.post("/predict", json={"records": [{"age_group": "80+ Years"}]}),
            503,
            "prediction_unavailable",
        )
        assert time.monotonic() - started < 5
        models = http.get("/models").json()
        assert (models["production"], models["versions"], models["total"]) == (None, [], 0)
    services.redis.close()
