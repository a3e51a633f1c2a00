"""The Open Inference Protocol's REST endpoints (KServe V2), for the one model this service
serves, ``death_yn``: health, metadata, and inference on the production version or on any
version the registry lists.

Inference takes ``POST /predict``'s path: the overload bound is checked before the body is
read, the records go to the prediction workers through the same batching client
(:class:`~api.queue.predictions.RedisPredictionClient`), and the read key is checked the same
way (:func:`~api.security.require_read_key`, called directly as ``/predict`` does). A version
from the URL is matched against the registry's listing (``404`` if absent) and only the listed
name travels on, as a field of the request's item in its batch; the workers keep the versions
they were asked for in a small cache (``MODEL_VERSION_CACHE_SIZE``).

These routes are not in the project's OpenAPI document (``/openapi.json`` describes the
project's own API and stays as it was): the protocol has its own specification, and every
error under ``/v2`` has the protocol's shape (:mod:`api.openinference.errors`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

import api.openinference.codec as codec
from api.deps import ServicesDep, get_services
from api.openinference.errors import V2_PREFIX, is_v2
from api.openinference.schemas import (
    InferResponse,
    Liveness,
    ModelMetadata,
    Readiness,
    ServerMetadata,
)
from api.schemas.predictions import MAX_RECORDS
from api.security import ReadAccess, require_read_key
from api.services import Services
from shared.data.schema import LABEL_COLUMN
from shared.errors import DomainError, NotFoundError
from shared.queues import PREDICTION_QUEUE, start_hint

__all__ = ["MODEL_NAME", "PLATFORM", "include_open_inference", "router"]

#: The one model: what it predicts.
MODEL_NAME = LABEL_COLUMN
PLATFORM = "scikit-learn"
SERVER_NAME = "runtime-v-training"
#: Protocol extensions this server implements.
EXTENSIONS = ["binary_tensor_data"]

router = APIRouter(prefix=V2_PREFIX, tags=["open inference protocol"], include_in_schema=False)


def _check_model(name: str) -> None:
    if name != MODEL_NAME:
        raise NotFoundError(
            f"unknown model {name!r}: this server serves one model, {MODEL_NAME!r}",
            {"model": name},
        )


def _listed(services: Services, version: str) -> str:
    """The registry's own name for ``version`` (matched against its listing; never a key)."""
    return services.registry.get(version).version


def _not_ready(services: Services, production: bool) -> str | None:
    """What keeps predictions from being answered, or None: Redis, a live prediction worker
    and, for the production model, a production version (``/readyz``'s facts for
    predictions)."""
    try:
        services.redis.ping()
    except Exception as exc:
        return f"Redis is unavailable ({type(exc).__name__})"
    try:
        workers = services.presence.alive(PREDICTION_QUEUE)
    except Exception as exc:
        return f"the prediction workers cannot be counted ({type(exc).__name__})"
    if not workers:
        return f"no live worker consumes the {PREDICTION_QUEUE!r} queue; " + start_hint(
            PREDICTION_QUEUE
        )
    if production:
        try:
            if services.registry.production_version() is None:
                return "no production model yet: train one first (POST /train or rvt train)"
        except DomainError as exc:
            return exc.message
    return None


def _readiness(response: Response, reason: str | None) -> Readiness:
    """``200 {"ready": true}``, or ``503`` with what is missing (the protocol reads any status
    but 200 as not ready; 503 is ``/readyz``'s)."""
    if reason is None:
        return Readiness(ready=True)
    response.status_code = 503
    return Readiness(ready=False, error=reason)


# -- health and metadata ------------------------------------------------------------------------


@router.get("", response_model=ServerMetadata, dependencies=[ReadAccess])
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=request.app.version, extensions=EXTENSIONS)


@router.get("/health/live", response_model=Liveness)
async def server_live() -> Liveness:
    """No I/O, as ``/healthz``."""
    return Liveness(live=True)


@router.get("/health/ready", response_model=Readiness, response_model_exclude_none=True)
def server_ready(response: Response, services: ServicesDep) -> Readiness:
    """Sync: its Redis and registry calls block, so they run in the threadpool."""
    return _readiness(response, _not_ready(services, production=True))


@router.get("/models/{model_name}", response_model=ModelMetadata, dependencies=[ReadAccess])
def model_metadata(model_name: str, services: ServicesDep) -> ModelMetadata:
    _check_model(model_name)
    versions = [version.version for version in services.registry.list_versions()]
    return _metadata(versions)


@router.get(
    "/models/{model_name}/ready", response_model=Readiness, response_model_exclude_none=True
)
def model_ready(model_name: str, response: Response, services: ServicesDep) -> Readiness:
    _check_model(model_name)
    return _readiness(response, _not_ready(services, production=True))


@router.get(
    "/models/{model_name}/versions/{version}",
    response_model=ModelMetadata,
    dependencies=[ReadAccess],
)
def version_metadata(model_name: str, version: str, services: ServicesDep) -> ModelMetadata:
    _check_model(model_name)
    return _metadata([_listed(services, version)])


@router.get(
    "/models/{model_name}/versions/{version}/ready",
    response_model=Readiness,
    response_model_exclude_none=True,
)
def version_ready(
    model_name: str, version: str, response: Response, services: ServicesDep
) -> Readiness:
    _check_model(model_name)
    _listed(services, version)
    return _readiness(response, _not_ready(services, production=False))


def _metadata(versions: list[str]) -> ModelMetadata:
    return ModelMetadata(
        name=MODEL_NAME,
        versions=versions,
        platform=PLATFORM,
        inputs=list(codec.INPUTS),
        outputs=list(codec.OUTPUTS),
    )


# -- inference ------------------------------------------------------------------------------------


async def _infer(request: Request, version: str | None) -> Response:
    """Declares no FastAPI dependency, as ``/predict``: the services and the key check are
    called directly (resolving a dependency tree costs tens of microseconds a request)."""
    services = await get_services(request)
    await require_read_key(request, services.settings)
    _check_model(request.path_params["model_name"])
    client = services.prediction_client
    client.refuse_if_full()  # shed before reading the body, as /predict does
    if version is not None:
        version = await asyncio.to_thread(_listed, services, version)
    decoded = codec.decode_request(await request.body(), _header_length(request), MAX_RECORDS)
    codes = decoded.codes
    result = await (
        client.predict(codes) if version is None else client.predict(codes, version=version)
    )
    if len(result.probabilities) != len(codes):
        raise RuntimeError(
            f"the prediction worker returned {len(result.probabilities)} probabilities "
            f"for {len(codes)} records"
        )
    body, headers = codec.encode_response(
        MODEL_NAME, result.model_version, decoded.request_id, result.probabilities, decoded.outputs
    )
    return Response(body, headers=headers)


_HEADER_KEY = codec.HEADER_LENGTH.lower().encode("latin-1")


def _header_length(request: Request) -> str | None:
    """The binary extension's header, read from the scope (cheaper than ``request.headers``)."""
    for key, value in request.scope["headers"]:
        if key == _HEADER_KEY:
            return str(value.decode("latin-1"))
    return None


@router.post("/models/{model_name}/infer", response_model=InferResponse)
async def infer(request: Request) -> Response:
    """Inference by the production version."""
    return await _infer(request, None)


@router.post("/models/{model_name}/versions/{version}/infer", response_model=InferResponse)
async def infer_version(request: Request) -> Response:
    """Inference by ``version``, any version the registry lists."""
    return await _infer(request, request.path_params["version"])


# -- registration ---------------------------------------------------------------------------------


class _OnlyUnderV2(BaseRoute):
    """The included ``/v2`` router behind a prefix test. Placed first in the app's routes, it
    passes every other path for the cost of one string comparison (``/predict``'s matching is
    unchanged), and a ``/v2`` request reaches its route without being tried against every
    route of the project's API first (that cost a V2 request tens of microseconds)."""

    def __init__(self, included: BaseRoute) -> None:
        self.included = included

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] not in ("http", "websocket") or not is_v2(scope):
            return Match.NONE, {}
        return self.included.matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.included.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.included.url_path_for(name, **path_params)


def include_open_inference(app: FastAPI) -> None:
    """Include :data:`router` in ``app``, matched before the project's routes but only for
    paths under ``/v2``."""
    app.include_router(router)
    app.router.routes.insert(0, _OnlyUnderV2(app.router.routes.pop()))
