"""The HTTP side of ``rvt api`` and ``rvt demo``, in one place: which API, with which key, how
long to wait, and any failure turned into a one-line message.

The key is read from the ``API_KEY`` setting, the one the server checks, unless a command is
given another; it travels in the ``X-API-Key`` header and is never part of a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from api.security import API_KEY_HEADER
from cli.console import CommandError
from shared.jobs.records import FINAL_STATUSES
from shared.queues import hard_time_limit
from shared.settings import Settings, get_settings

#: Any single request; the server answers everything but an upload in well under a second.
REQUEST_TIMEOUT_SECONDS = 30.0
#: An upload is answered only once the server has read and checked the whole file.
UPLOAD_TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, read=600.0)
#: How often a watched job is asked for its progress.
POLL_SECONDS = 0.25

Job = dict[str, Any]


class ApiError(CommandError):
    """The API refused, failed or could not be reached; ``status`` is 0 when nothing answered."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class JobWaitTimeout(CommandError):
    """The job did not end in time. It goes on on the server; only the watching stops."""

    exit_code = 3


def default_wait_seconds(settings: Settings) -> float:
    """Long enough for any running training to end by itself: at its hard time limit the worker
    kills it, and within one lease its job is marked failed. (Time spent queued behind other
    jobs is not bounded by any setting, so it is not counted.)"""
    return hard_time_limit(settings) + settings.job_lease_seconds


def _error_message(response: httpx.Response, body: Any, sent_key: bool) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = f"{response.status_code} {error.get('code')}: {error.get('message')}"
    else:  # not this API's error shape: a proxy, or another service on that port
        message = f"{response.status_code} {response.reason_phrase} from {response.url}"
    if response.status_code == 401 and not sent_key:
        message += " (set API_KEY, or pass --api-key)"
    return message


class ApiClient:
    """A running API, as one command talks to it. Use it as a context manager."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        settings = get_settings()
        self.base_url = (base_url or settings.api_url).rstrip("/")
        self._key = api_key or settings.api_key_value
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={API_KEY_HEADER: self._key} if self._key else {},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def twin(self) -> ApiClient:
        """Another client to the same API with the same key, for another thread."""
        return ApiClient(self.base_url, self._key)

    def send(
        self, method: str, path: str, timeout: float | httpx.Timeout | None = None, **kwargs: Any
    ) -> httpx.Response:
        """The raw answer, whatever its status; only a transport failure raises."""
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(
                f"the API at {self.base_url} did not answer {method} {path} in time"
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.base_url}: {exc}") from None

    def request(
        self, method: str, path: str, timeout: float | httpx.Timeout | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The JSON body of a successful answer; anything else is an :class:`ApiError`."""
        response = self.send(method, path, timeout, **kwargs)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise ApiError(
                _error_message(response, body, sent_key=self._key is not None),
                response.status_code,
            )
        if not isinstance(body, dict):
            raise ApiError(
                f"{method} {path} answered {response.status_code} with no JSON object: "
                f"is {self.base_url} this service's API?",
                response.status_code,
            )
        return body

    def upload_dataset(self, path: Path) -> dict[str, Any]:
        """POST /datasets: the server stores the file under a name it picks, and returns it."""
        with path.open("rb") as fh:
            return self.request(
                "POST", "/datasets", UPLOAD_TIMEOUT, files={"file": (path.name, fh, "text/csv")}
            )

    def wait_for_job(
        self, job_id: str, timeout: float, on_update: Callable[[Job], None] | None = None
    ) -> Job:
        """Poll the job until it ends, for ``timeout`` seconds at most (then
        :class:`JobWaitTimeout`), passing each answer to ``on_update``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            job = self.request(
                "GET", f"/jobs/{job_id}", timeout=min(REQUEST_TIMEOUT_SECONDS, max(remaining, 1.0))
            )
            if on_update is not None:
                on_update(job)
            if job["status"] in FINAL_STATUSES:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JobWaitTimeout(
                    f"job {job_id} is still {job['status']} after {timeout:g} s (it continues "
                    f"on the server): follow it with `rvt api jobs`, or stop it with "
                    f"`rvt api cancel {job_id}`"
                )
            time.sleep(min(POLL_SECONDS, remaining))
