"""The app factory. ``uvicorn api.main:app`` serves the module-level app; tests build their own
with :func:`create_app` and in-process fakes for the queue boundary."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.middleware import RequestIdMiddleware
from api.routes import api_router
from api.services import Services, build_services
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Trainings run in Celery workers, off the request path: `POST /train` answers `202` at once with
a job to poll. Predictions are scored by workers that already hold the production model.

Every error has one shape: `{"error": {"code", "message", "details", "request_id"}}`.
"""


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Building the app connects to nothing: without injected ``services`` the real ones are
    built in the lifespan (and their clients connect on first use), so importing this module
    is always safe."""
    settings = settings or (services.settings if services is not None else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = app.state.services is None
        if owned:
            app.state.services = build_services(settings)
        current: Services = app.state.services
        try:
            yield
        finally:
            await current.prediction_client.aclose()
            if owned:
                current.redis.close()
                app.state.services = None

    app = FastAPI(
        title="runtime-v-training",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(api_router)
    return app


app = create_app()
