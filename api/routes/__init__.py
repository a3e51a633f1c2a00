"""One small router per resource, gathered here."""

from fastapi import APIRouter
from fastapi.routing import APIRoute

from api.errors import error_responses
from api.routes import compare, dashboard, datasets, health, jobs, metrics, models, predict, train

#: The hot paths first: FastAPI tries routers in this order, and each one tried costs a request
#: a few microseconds (issue #5: about 10% of /predict's and 25% of /healthz's throughput).
ROUTERS = tuple(
    module.router
    for module in (predict, health, train, jobs, datasets, models, compare, metrics, dashboard)
)

api_router = APIRouter()
for router in ROUTERS:
    # Any endpoint can fail unexpectedly; the 500 has the same documented shape.
    api_router.include_router(router, responses=error_responses(500))


def api_routes() -> list[APIRoute]:
    """Every endpoint, with the dependencies its router gave it (what OpenAPI is built from)."""
    return [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]


__all__ = ["api_router", "api_routes"]
