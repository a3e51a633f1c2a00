"""GET /metrics: the Prometheus scrape target of the whole service (see :mod:`api.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.security import ReadAccess

router = APIRouter(tags=["observability"], dependencies=[ReadAccess])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics of the API, the workers and the queues",
)
def metrics(request: Request) -> Response:
    """Sync on purpose: the worker-side families are read from Redis (bounded by the client's
    short timeouts), so the scrape runs in the threadpool, never on the event loop."""
    body, content_type = request.app.state.metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
