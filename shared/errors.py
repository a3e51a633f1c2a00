"""Domain errors. Each carries an HTTP-ish status and a stable code, so the API maps them all
with one handler and the CLI prints them as one line; nothing here knows about HTTP itself."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard


class DomainError(Exception):
    """Base of every error the project raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"
    #: Seconds a client should wait before trying again (the ``Retry-After`` header), if known.
    retry_after_seconds: int | None = None

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class DataError(DomainError):
    """A dataset that cannot be used: the message names the problem."""

    status_code = 422
    code = "invalid_dataset"


class NotFoundError(DomainError):
    status_code = 404
    code = "not_found"


class VersionNotFoundError(NotFoundError):
    code = "version_not_found"


class DatasetNotFoundError(DomainError):
    status_code = 422
    code = "unknown_dataset"


class ConflictError(DomainError):
    status_code = 409
    code = "conflict"


class GateFailedError(ConflictError):
    """Promoting a version that failed the quality gate needs an explicit force."""

    code = "gate_failed"


class VersionInUseError(ConflictError):
    """A version that serves, or that a rollback could bring back, cannot be deleted: the
    message says which of the two, and what to do first."""

    code = "version_in_use"


class ExplanationUnavailableError(ConflictError):
    """The version that would answer cannot explain its predictions (saved without its
    training distribution, or not a pipeline of a known shape): train a new version."""

    code = "explanation_unavailable"


class NoProductionModelError(DomainError):
    status_code = 503
    code = "no_production_model"


class IntegrityError(DomainError):
    """An artifact whose checksum does not match its metadata: never unpickled."""

    status_code = 500
    code = "artifact_integrity"


class TrainingCancelled(DomainError):
    status_code = 409
    code = "cancelled"


class InvalidParameterError(DomainError):
    status_code = 422
    code = "invalid_parameter"


class JobNotFoundError(NotFoundError):
    """An unknown job id, or one whose record expired: the message names the id."""

    code = "job_not_found"


class JobConflictError(ConflictError):
    """A cancel that comes too late: the job already ended, or is saving its result."""

    code = "job_conflict"


class IdempotencyConflictError(DomainError):
    """An idempotency key reused with a different body: replaying the first job would hide
    the difference, and starting a second would defeat the key."""

    status_code = 422
    code = "idempotency_conflict"


class PredictionUnavailableError(DomainError):
    """No prediction worker answered in time, or the broker is unreachable."""

    status_code = 503
    code = "prediction_unavailable"


class OverloadedError(PredictionUnavailableError):
    """More predictions are waiting in this API process than it lets wait: refused at once,
    so that those admitted stay fast and a client can go elsewhere or come back shortly."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UploadTooLargeError(DomainError):
    """An upload past the size limit: refused as soon as the limit is crossed."""

    status_code = 413
    code = "upload_too_large"


class StorageUnavailableError(DomainError):
    """The object store holding the models or the datasets cannot be reached, or refused the
    request (credentials, bucket): nothing was changed, and the message says what failed."""

    status_code = 503
    code = "storage_unavailable"
    retry_after_seconds = 1


class StorageFullError(DomainError):
    """The disk (or quota) holding the models or the datasets is full: what was being written
    is removed again, and nothing else changed. Raised through :func:`disk_full_means`."""

    status_code = 507
    code = "storage_full"

    #: ENOSPC, and EDQUOT: a quota is a full disk as far as the writer can tell.
    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

    @classmethod
    def caused(cls, exc: BaseException) -> TypeGuard[OSError]:
        """Whether ``exc`` is the operating system saying the disk is full."""
        return isinstance(exc, OSError) and exc.errno in cls.ERRNOS

    @classmethod
    def instead_of(cls, exc: OSError, what: str) -> StorageFullError:
        return cls(f"the disk is full ({exc.strerror}): {what}")


@contextmanager
def disk_full_means(what: str) -> Iterator[None]:
    """Within it, the operating system's "no space left" becomes a :class:`StorageFullError`
    whose message says what did not happen (``what``)."""
    try:
        yield
    except OSError as exc:
        if StorageFullError.caused(exc):
            raise StorageFullError.instead_of(exc, what) from exc
        raise
