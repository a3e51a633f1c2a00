"""One small router per resource, gathered here."""

from fastapi import APIRouter

from api.errors import error_responses
from api.routes import dashboard, datasets, health, jobs, metrics, models, predict, train

api_router = APIRouter()
for module in (train, jobs, predict, datasets, models, health, metrics, dashboard):
    # Any endpoint can fail unexpectedly; the 500 has the same documented shape.
    api_router.include_router(module.router, responses=error_responses(500))

__all__ = ["api_router"]
