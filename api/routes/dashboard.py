"""The dashboard: a page the API serves itself at ``/``, its static files, and the CDC
vocabularies its prediction form offers.

The page is plain HTML, CSS and ES modules from ``api/static/``: nothing to build, nothing
fetched from elsewhere (its Content-Security-Policy allows this origin only). It talks to the
same public endpoints any client uses.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.schemas.predictions import CaseRecord
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: The page loads scripts, styles and data from this origin only, and never inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
#: Revalidate every time (cheap: ETag / Last-Modified), so an upgrade is never half-applied.
_NO_CACHE = {"Cache-Control": "no-cache"}


class _StaticFiles(StaticFiles):
    """Starlette's ``StaticFiles`` with ``Cache-Control: no-cache`` on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_NO_CACHE)
        return response


class Vocabulary(BaseModel):
    columns: list[str] = Field(description="The model's feature columns, in order.")
    values: dict[str, list[str]] = Field(description="CDC's allowed values, per column.")
    required: list[str] = Field(description="Columns a record must give (POST /predict).")
    missing: str = Field(description="The value an omitted column takes.")


router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, **_NO_CACHE},
    )


@router.get("/vocabulary", response_model=Vocabulary, summary="CDC values of every feature")
async def vocabulary() -> Vocabulary:
    """What ``POST /predict`` accepts for each field of a record (the dashboard's drop-downs)."""
    return Vocabulary(
        columns=list(FEATURE_COLUMNS),
        values={column: list(VOCABULARY[column]) for column in FEATURE_COLUMNS},
        required=[name for name, field in CaseRecord.model_fields.items() if field.is_required()],
        missing=MISSING,
    )


router.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
