"""The model registry: versions, their metrics and gate, and which one serves; deleting one.

The list is paged with a cursor, not an offset: a page starts below the version named by
``cursor`` (the previous page's last), so deletions and new versions between two requests
neither skip nor repeat a version. Every page reads the listing (names only) and the metadata
of its own versions only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from starlette.exceptions import HTTPException

from api.deps import RedisDep, RegistryDep, SettingsDep
from api.errors import error_responses
from api.routes.params import VersionPath, link
from api.schemas.models import (
    MODELS_PAGE_DEFAULT,
    MODELS_PAGE_MAX,
    ModelDeleted,
    ModelList,
    ModelMetadata,
    ModelSummary,
    ProductionOut,
    PromoteRequest,
)
from api.security import ReadAccess, WriteAccess
from shared import registry_events
from shared.model.evaluation import KEY_METRICS
from shared.registry.versions import VERSION_PATTERN, ModelVersion, ProductionState

router = APIRouter(prefix="/models", tags=["models"], dependencies=[ReadAccess])

MODEL_PATH = "/models/{version}"
PROMOTE_PATH = "/models/{version}/promote"


def version_links(expression: str, promote: bool = True) -> dict[str, Any]:
    """Links to the version ``expression`` evaluates to."""
    version = {"version": expression}
    links = {"ShowModel": link(MODEL_PATH, "get", "The version's metadata.", version)}
    if promote:
        links["PromoteModel"] = link(PROMOTE_PATH, "post", "Serve this version.", version)
    return links


def _dict(value: Any) -> dict[str, Any] | None:
    """Metadata is read from disk: a field of an unexpected type is shown as absent."""
    return value if isinstance(value, dict) else None


def _summary(info: ModelVersion, production: str | None) -> ModelSummary:
    meta = info.metadata
    metrics = _dict(meta.get("metrics"))
    gate = _dict(meta.get("gate"))
    rows = _dict(meta.get("rows"))
    return ModelSummary(
        version=info.version,
        created_at=meta.get("created_at"),
        estimator=meta["estimator"] if isinstance(meta.get("estimator"), str) else None,
        dataset=_dict(meta.get("dataset")),
        rows={k: v for k, v in rows.items() if isinstance(v, int)} if rows else None,
        metrics={k: metrics.get(k) for k in KEY_METRICS} if metrics else None,
        gate=gate if gate and isinstance(gate.get("passed"), bool) else None,
        promoted=info.version == production,
    )


def _production(state: ProductionState) -> ProductionOut:
    return ProductionOut(production=state.version, history=state.history)


@router.get(
    "",
    response_model=ModelList,
    responses={
        200: {
            "description": "A page of versions, newest first.",
            "links": version_links("$response.body#/versions/0/version"),
        },
        **error_responses(422),
    },
    summary="The versions, newest first, a page at a time",
)
def list_models(
    registry: RegistryDep,
    limit: Annotated[
        int, Query(ge=1, le=MODELS_PAGE_MAX, description="Versions per page.")
    ] = MODELS_PAGE_DEFAULT,
    cursor: Annotated[
        str | None,
        Query(
            pattern=VERSION_PATTERN,
            description=(
                "Start below this version: the `next_cursor` of the previous page (it may "
                "have been deleted since; only its number counts)."
            ),
        ),
    ] = None,
) -> ModelList:
    state = registry.production()
    page = registry.page(limit, cursor)
    following = page.next_before
    return ModelList(
        production=state.version,
        history=state.history,
        versions=[_summary(info, state.version) for info in page.versions],
        total=page.total,
        limit=limit,
        next_cursor=following,
        next=f"/models?limit={limit}&cursor={following}" if following else None,
    )


@router.post(
    "/rollback",
    dependencies=[WriteAccess],
    response_model=ProductionOut,
    responses={
        200: {
            "description": "The new production state.",
            "links": version_links("$response.body#/production", promote=False),
        },
        **error_responses(409),
    },
    summary="Serve the previous production version again",
)
def rollback(registry: RegistryDep, redis: RedisDep, settings: SettingsDep) -> ProductionOut:
    announcer = registry_events.AliasAnnouncer(redis, settings.redis_prefix)
    return _production(registry_events.rollback(registry, announcer))


@router.api_route("/rollback", methods=["GET", "DELETE"], include_in_schema=False)
async def rollback_takes_post_only() -> None:
    """Without it, ``GET`` (or ``DELETE``) ``/models/rollback`` would be that method on
    ``/models/{version}`` for a version named "rollback" (a 404): this path is the rollback,
    which takes ``POST`` only (405, and its ``Allow``, as for any other method)."""
    raise HTTPException(405)


@router.get(
    "/{version}",
    response_model=ModelMetadata,
    response_model_exclude_unset=True,
    responses=error_responses(404, 422),
    summary="A version's full metadata",
)
def show_model(version: VersionPath, registry: RegistryDep) -> ModelMetadata:
    """The metadata.json as saved, group metrics included."""
    return ModelMetadata.model_validate(registry.get(version).metadata)


@router.post(
    "/{version}/promote",
    dependencies=[WriteAccess],
    response_model=ProductionOut,
    responses={
        200: {
            "description": "The new production state.",
            "links": version_links("$response.body#/production", promote=False),
        },
        **error_responses(404, 409, 422),
    },
    summary="Make a version the production one",
)
def promote(
    version: VersionPath,
    registry: RegistryDep,
    redis: RedisDep,
    settings: SettingsDep,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> ProductionOut:
    """A version that failed its quality gate needs ``{"force": true}`` (409 otherwise).
    The change is announced over Redis: prediction workers serve it within a second."""
    force = body.force if body is not None else False
    announcer = registry_events.AliasAnnouncer(redis, settings.redis_prefix)
    return _production(registry_events.promote(registry, announcer, version, force=force))


@router.delete(
    "/{version}",
    dependencies=[WriteAccess],
    response_model=ModelDeleted,
    responses={
        200: {"description": "Deleted: no listing shows it, no worker loads it again."},
        **error_responses(404, 409, 422),
    },
    summary="Delete a version that is neither production nor in the rollback history",
)
def delete_model(
    version: VersionPath, registry: RegistryDep, redis: RedisDep, settings: SettingsDep
) -> ModelDeleted:
    """``409 version_in_use`` for the production version or one in the rollback history (the
    message says which, and what to do first). Its number is never given to another version.
    The deletion is announced over Redis, as promotions are, so that every serving process
    drops it."""
    announcer = registry_events.AliasAnnouncer(redis, settings.redis_prefix)
    registry_events.delete(registry, announcer, version)
    return ModelDeleted(deleted=version)
