"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class RedisCheck(BaseModel):
    ok: bool
    detail: str


class WorkersCheck(BaseModel):
    ok: bool
    workers: list[str]
    detail: str | None = None


class ReadyChecks(BaseModel):
    redis: RedisCheck
    training_workers: WorkersCheck
    prediction_workers: WorkersCheck


class Readiness(BaseModel):
    ready: bool
    checks: ReadyChecks
