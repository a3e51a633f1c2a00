"""Job counters and duration histograms, kept in Redis by the job scripts themselves.

The scripts that make a job final also count it, atomically with the transition, so each job
is counted exactly once whichever process ended it (a worker, the API cancelling a queued job,
or anyone settling a lost one). The API reads them at scrape time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DURATION_BUCKETS", "DurationHistogram", "JobMetrics"]

#: Upper bounds (seconds) of the job duration histogram: trainings take seconds to an hour.
DURATION_BUCKETS: tuple[float, ...] = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class DurationHistogram:
    #: (upper bound in seconds, jobs at or under it), cumulative, in DURATION_BUCKETS order;
    #: ``count`` is the +Inf bucket.
    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


@dataclass(frozen=True)
class JobMetrics:
    #: (kind, final status) -> jobs that reached it
    finished: dict[tuple[str, str], int]
    #: (kind, final status) -> time from start to that status, for jobs that ran
    durations: dict[tuple[str, str], DurationHistogram]
