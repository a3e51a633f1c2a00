"""Two versions side by side, where a user decides which one to promote.

A route of its own under ``/models``: ``/models/{a}/compare/{b}`` has more segments than
``/models/{version}``, which therefore never matches it, whichever router is tried first.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import RegistryDep
from api.errors import error_responses
from api.routes.models import version_links
from api.routes.params import VersionPath
from api.schemas.comparison import ComparisonOut
from api.security import ReadAccess
from shared.model.compare import ComparisonCache, compare_versions

router = APIRouter(prefix="/models", tags=["models"], dependencies=[ReadAccess])

#: Per API process (see :class:`~shared.model.compare.ComparisonCache` for why it may be).
COMPARISONS = ComparisonCache(size=64)


@router.get(
    "/{a}/compare/{b}",
    response_model=ComparisonOut,
    responses={
        200: {
            "description": "Both versions' metrics side by side, and where their predictions "
            "differ.",
            "links": {
                **{f"{k}A": v for k, v in version_links("$response.body#/a/version").items()},
                **{f"{k}B": v for k, v in version_links("$response.body#/b/version").items()},
            },
        },
        **error_responses(404, 422),
    },
    summary="Compare two versions before promoting one",
)
def compare(a: VersionPath, b: VersionPath, registry: RegistryDep) -> ComparisonOut:
    """Metrics and per-group metrics of both, with their differences (``b - a``), and the
    share of the 95,040 feature combinations, and of each version's training cases, on which
    their labels differ. ``a`` may equal ``b`` (everything then agrees).

    A plain ``def``: FastAPI runs it in its threadpool, because loading and evaluating two
    versions takes tens to hundreds of milliseconds the event loop must not wait for. Each
    version is loaded with the registry's checksummed ``load``; a pair already compared in
    this process is answered from the cache."""
    info_a, info_b = registry.get(a), registry.get(b)
    found = compare_versions(info_a, info_b, registry.load, COMPARISONS)
    return ComparisonOut.model_validate(found.as_dict())
