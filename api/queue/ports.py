"""The API's two boundaries to the workers, as protocols, so the app never depends on Celery.

The real implementations live in :mod:`api.queue.predictions`; tests swap in-process fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from shared.errors import DomainError, PredictionUnavailableError

__all__ = [
    "PredictionClient",
    "PredictionResult",
    "PredictionUnavailableError",
    "QueueUnavailableError",
    "TrainingQueue",
]


class QueueUnavailableError(DomainError):
    """A training could not be handed to the broker; the job is closed as failed, not left
    queued for a message that will never come."""

    status_code = 503
    code = "queue_unavailable"


class TrainingQueue(Protocol):
    def submit(self, job_id: str) -> None:
        """Enqueue the training task for an existing job record; raise if it was not sent."""
        ...

    def revoke(self, job_id: str) -> None:
        """Best effort: stop a queued message from starting (the job record already says
        cancelled, so a message that slips through does nothing)."""
        ...


@dataclass(frozen=True)
class PredictionResult:
    model_version: str
    #: P(death_yn = Yes), one per record, in the order sent.
    probabilities: list[float]
    #: Only when asked to explain: the mean log-odds over the training cases, and per record
    #: the seven contributions in FEATURE_COLUMNS order (see shared.model.explain).
    baseline_log_odds: float | None = None
    contributions: list[list[float]] | None = None


class PredictionClient(Protocol):
    def refuse_if_full(self) -> None:
        """Raise :class:`~shared.errors.OverloadedError` (503, ``Retry-After``) if a new
        request could not be admitted now; called before the body is read."""
        ...

    async def predict(
        self, codes: np.ndarray, explain: bool = False, version: str | None = None
    ) -> PredictionResult:
        """Score ``codes``, an int8 array (n, 7) whose column j indexes
        ``VOCABULARY[FEATURE_COLUMNS[j]]``; with ``explain``, also each record's contributions;
        with ``version`` (a name the registry lists), by that version rather than production
        (:class:`~shared.errors.VersionNotFoundError`, 404, if the workers no longer find it).

        Raises :class:`~shared.errors.NoProductionModelError` when nothing is promoted yet, and
        :class:`~shared.errors.PredictionUnavailableError` when no worker answers in time or
        Redis is down (both 503); with ``explain``,
        :class:`~shared.errors.ExplanationUnavailableError` (409) when the version serving
        cannot explain.
        """
        ...

    async def aclose(self) -> None: ...
