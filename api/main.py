"""The app factory. ``uvicorn api.main:app`` serves the module-level app (``python -m
api.server`` runs it as several processes); tests build their own with :func:`create_app` and
in-process fakes for the queue boundary.

Middleware, outermost first: metrics (sees every answer, 500s included), request ids, CORS
(only when ``CORS_ORIGINS`` is set), the body limit; then the routes.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.errors import install_error_handlers
from api.limits import BodyLimitMiddleware
from api.metrics import ApiMetrics, MetricsMiddleware
from api.middleware import REQUEST_ID_HEADER, RequestIdMiddleware
from api.openinference.errors import install_v2_error_shape
from api.openinference.routes import include_open_inference
from api.routes import api_router, api_routes
from api.security import API_KEY_HEADER, document_security
from api.services import Services, build_services
from shared.logging_setup import configure_logging
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Trainings run in Celery workers, off the request path: `POST /train` answers `202` at once with
a job to poll. Predictions are scored by workers that already hold the production model.

Every error has one shape: `{"error": {"code", "message", "details", "request_id"}}`.

When the server sets `API_KEY`, the endpoints that change state need it, as
`Authorization: Bearer <key>` or `X-API-Key: <key>`: this document then declares the security
schemes, on exactly the operations that need the key (without a key, it declares none).
Prometheus metrics are at `/metrics`.

Operations link to each other (OpenAPI links): a training's answer to its job, a job to its
cancel (`POST /jobs/{job_id}/cancel`), an upload to a training on it.
"""


def check_settings(settings: Settings) -> None:
    """Refuse a configuration that would silently leave open what it meant to close."""
    if settings.api_key_required_for_reads and settings.api_key_value is None:
        raise ValueError(
            "API_KEY_REQUIRED_FOR_READS is set but API_KEY is not: set API_KEY as well"
        )


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """FastAPI's document, with the API key declared exactly where this server enforces it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_security(generate(), api_routes(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Building the app connects to nothing: without injected ``services`` the real ones are
    built in the lifespan (and their clients connect on first use), so importing this module
    is always safe."""
    settings = settings or (services.settings if services is not None else get_settings())
    check_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = app.state.services is None
        if owned:
            app.state.services = build_services(settings)
        if settings.api_key_value is None:
            log.warning(
                "API_KEY is not set: anyone who can reach this API can train, cancel jobs, "
                "upload datasets and promote models"
            )
        current: Services = app.state.services
        if owned:
            # Start-up objects (modules, the app, services) leave the garbage collector's
            # view: full collections then scan only what requests allocate, in well under a
            # millisecond instead of tens of milliseconds on the request path (issue #5).
            gc.freeze()
        try:
            yield
        finally:
            await current.prediction_client.aclose()
            if owned:
                current.redis.close()
                app.state.services = None
                app.state.metrics.process_exiting()

    app = FastAPI(
        title="runtime-v-training",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = ApiMetrics(lambda: app.state.services)
    install_error_handlers(app)
    # add_middleware puts each one outside the previous: innermost first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_json_body_bytes)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                API_KEY_HEADER,
                "Content-Type",
                "Idempotency-Key",
                REQUEST_ID_HEADER,
            ],
            expose_headers=[REQUEST_ID_HEADER, "Location"],
        )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(api_router)
    include_open_inference(app)  # /v2: the Open Inference Protocol
    install_v2_error_shape(app)  # after install_error_handlers: its errors in the V2 shape
    install_openapi(app, settings)
    return app


def serving_app() -> FastAPI:
    """The app ``uvicorn api.main:app`` serves. Logging is set up here, when uvicorn imports
    this module, rather than in the lifespan: uvicorn logs its first lines before the lifespan
    runs, and they should be in the same format as the rest."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


app = serving_app()
