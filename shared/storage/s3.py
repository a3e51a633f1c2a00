"""A thin layer over boto3 for one ``s3://BUCKET/PREFIX``: the calls the stores need, with S3's
errors turned into the project's.

Why boto3: it is the reference client, and the one that exposes what the registry's promises
rest on, per request: ``IfNoneMatch="*"`` (create only if absent) and ``IfMatch=ETag``
(compare-and-set) on ``PutObject``, ``CopyObject`` and ``CompleteMultipartUpload``; plus
multipart uploads and ranged, streaming reads. It talks to any S3-compatible server through
``S3_ENDPOINT_URL`` (path-style addressing there, so no DNS per bucket).

Errors: a lost condition is :class:`PreconditionFailed` (the caller retries or reports a
conflict); a missing object is :class:`FileNotFoundError`; everything else (unreachable,
refused credentials, no such bucket, server errors) is a
:class:`~shared.errors.StorageUnavailableError` (503), whose message says which.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

import boto3
import botocore.exceptions
from botocore.config import Config
from urllib3.exceptions import HTTPError as Urllib3Error

from shared.errors import ConflictError, StorageUnavailableError
from shared.storage.location import S3Location

__all__ = ["ObjectInfo", "ObjectStore", "PreconditionFailed", "s3_client"]

log = logging.getLogger(__name__)

#: Part size of multipart uploads and copies: memory per upload in flight is one part.
PART_BYTES = 8 * 1024 * 1024
#: S3 copies at most this much in one CopyObject; larger objects are copied part by part.
_COPY_LIMIT = 5 * 1024**3
_COPY_PART_BYTES = 512 * 1024 * 1024
#: Reconnections a streaming read makes (from where it stopped) before it gives up.
_READ_RETRIES = 3
_LOST_CONDITION = {"PreconditionFailed", "ConditionalRequestConflict"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


_SESSION_LOCK = threading.Lock()


class PreconditionFailed(Exception):
    """A conditional request lost: the object exists (``If-None-Match: *``) or changed since
    its ETag was read (``If-Match``)."""


@dataclass(frozen=True)
class ObjectInfo:
    #: The key below the store's prefix.
    name: str
    size: int
    etag: str
    modified: datetime


def s3_client(
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> Any:
    """A boto3 S3 client that fails fast when the store is away (a request waits seconds, not
    minutes) and sends checksums only where S3 requires them, which every S3-compatible server
    accepts. Credentials left None come from boto3's usual chain (environment, profile, role)."""
    config = Config(
        connect_timeout=2,
        read_timeout=20,
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": "path"} if endpoint_url else {},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    with _SESSION_LOCK:  # a session is not thread-safe; its clients are
        return _session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=config,
        )


@functools.cache
def _session() -> Any:
    """One boto3 session per process: it caches the service description, which each new
    session would parse again (a good part of a second per client)."""
    return boto3.session.Session()


def _error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), int(status or 0)


class ObjectStore:
    """The objects under one bucket and prefix; every name here is relative to the prefix."""

    def __init__(self, client: Any, location: S3Location) -> None:
        self.client = client
        self.location = location
        self.bucket = location.bucket

    def __str__(self) -> str:
        return str(self.location)

    def key(self, name: str) -> str:
        return self.location.key(name)

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turns S3's errors into :class:`PreconditionFailed`, :class:`FileNotFoundError` and
        :class:`StorageUnavailableError`."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            code, status = _error_code(exc)
            if code in _LOST_CONDITION or status == 412:
                raise PreconditionFailed(f"{what}: {code or status}") from exc
            if code in _MISSING:
                raise FileNotFoundError(f"{what}: no such object in {self}") from exc
            if code == "NoSuchBucket":
                raise StorageUnavailableError(
                    f"the object store has no bucket {self.bucket!r} ({what}): create it first",
                    {"bucket": self.bucket},
                ) from exc
            raise StorageUnavailableError(
                f"the object store refused to {what} in {self}: {code or status} "
                f"{exc.response.get('Error', {}).get('Message', '')}".rstrip(),
                {"code": code, "status": status},
            ) from exc
        except (botocore.exceptions.BotoCoreError, Urllib3Error) as exc:
            raise StorageUnavailableError(
                f"the object store is unreachable ({what} in {self}): {exc}"
            ) from exc

    # -- small objects ------------------------------------------------------------------------

    def get(self, name: str) -> tuple[bytes, str]:
        """The whole object and its ETag; FileNotFoundError if it does not exist."""
        with self._calling(f"read {name}"):
            reply = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            return reply["Body"].read(), str(reply["ETag"])

    def head(self, name: str) -> ObjectInfo | None:
        try:
            with self._calling(f"look up {name}"):
                reply = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except FileNotFoundError:
            return None
        return ObjectInfo(
            name, int(reply["ContentLength"]), str(reply["ETag"]), reply["LastModified"]
        )

    def put(
        self, name: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        """Write ``data`` whole; with a condition, :class:`PreconditionFailed` if it does not
        hold. The new ETag."""
        conditions: dict[str, str] = {}
        if if_absent:
            conditions["IfNoneMatch"] = "*"
        if if_match is not None:
            conditions["IfMatch"] = if_match
        try:
            with self._calling(f"write {name}"):
                reply = self.client.put_object(
                    Bucket=self.bucket, Key=self.key(name), Body=data, **conditions
                )
        except FileNotFoundError as exc:  # S3 answers If-Match on a vanished key with 404
            raise PreconditionFailed(f"write {name}: the object is gone") from exc
        return str(reply["ETag"])

    def delete(self, name: str) -> None:
        with self._calling(f"delete {name}"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def list(self, under: str = "", recursive: bool = True) -> list[ObjectInfo]:
        """The objects whose name starts with ``under``; without ``recursive``, only those
        with no further ``/`` (one folder level)."""
        found: list[ObjectInfo] = []
        extra = {} if recursive else {"Delimiter": "/"}
        cut = len(self.location.prefix)
        with self._calling(f"list {under or 'the store'}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(under), **extra
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(
                        ObjectInfo(
                            item["Key"][cut:],
                            int(item["Size"]),
                            str(item["ETag"]),
                            item["LastModified"],
                        )
                    )
        return found

    # -- large objects ------------------------------------------------------------------------

    def upload(
        self, name: str, source: BinaryIO | io.RawIOBase, *, if_absent: bool = False
    ) -> ObjectInfo:
        """Stream ``source`` into ``name``, one part in memory at a time (a single PUT when it
        fits in one part). If ``source`` raises, the upload is aborted and nothing is left; with
        ``if_absent``, :class:`PreconditionFailed` if ``name`` exists by the end."""
        first = _read_part(source)
        if len(first) < PART_BYTES:
            etag = self.put(name, first, if_absent=if_absent)
            return ObjectInfo(name, len(first), etag, datetime.now().astimezone())
        with self._calling(f"start uploading {name}"):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key(name))[
                "UploadId"
            ]
        try:
            parts: list[dict[str, Any]] = []
            size, chunk = 0, first
            while chunk:
                with self._calling(f"upload part {len(parts) + 1} of {name}"):
                    reply = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=self.key(name),
                        UploadId=upload_id,
                        PartNumber=len(parts) + 1,
                        Body=chunk,
                    )
                parts.append({"ETag": reply["ETag"], "PartNumber": len(parts) + 1})
                size += len(chunk)
                chunk = _read_part(source)
            with self._calling(f"finish uploading {name}"):
                reply = self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key(name),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **({"IfNoneMatch": "*"} if if_absent else {}),
                )
        except BaseException:
            self._abort(name, upload_id)
            raise
        return ObjectInfo(name, size, str(reply["ETag"]), datetime.now().astimezone())

    def _abort(self, name: str, upload_id: str) -> None:
        try:
            with self._calling(f"abort the upload of {name}"):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key(name), UploadId=upload_id
                )
        except Exception:  # the caller's error matters more; stale uploads are swept later
            log.warning("could not abort the multipart upload of %s", name, exc_info=True)

    def abort_stale_uploads(self, under: str, older_than: datetime) -> int:
        """Abort multipart uploads under ``under`` started before ``older_than`` (left by a
        process that died mid-upload: their parts are invisible, but they take space)."""
        aborted = 0
        with self._calling("list unfinished uploads"):
            reply = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.key(under))
        for upload in reply.get("Uploads", []):
            if upload["Initiated"] < older_than:
                name = upload["Key"][len(self.location.prefix) :]
                self._abort(name, upload["UploadId"])
                aborted += 1
        return aborted

    def copy_new(self, source: ObjectInfo, target: str) -> str:
        """Copy ``source`` (as it was when listed: its ETag must still match) to ``target``,
        only if ``target`` does not exist yet (:class:`PreconditionFailed` otherwise). The new
        object's ETag."""
        what = f"copy {source.name} to {target}"
        origin = {"Bucket": self.bucket, "Key": self.key(source.name)}
        if source.size <= _COPY_LIMIT:
            with self._calling(what):
                reply = self.client.copy_object(
                    Bucket=self.bucket,
                    Key=self.key(target),
                    CopySource=origin,
                    CopySourceIfMatch=source.etag,
                    IfNoneMatch="*",
                )
            return str(reply["CopyObjectResult"]["ETag"])
        with self._calling(f"start to {what}"):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key(target)
            )["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            for start in range(0, source.size, _COPY_PART_BYTES):
                end = min(start + _COPY_PART_BYTES, source.size) - 1
                with self._calling(what):
                    reply = self.client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=self.key(target),
                        UploadId=upload_id,
                        PartNumber=len(parts) + 1,
                        CopySource=origin,
                        CopySourceIfMatch=source.etag,
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                parts.append(
                    {"ETag": reply["CopyPartResult"]["ETag"], "PartNumber": len(parts) + 1}
                )
            with self._calling(what):
                reply = self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key(target),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
        except BaseException:
            self._abort(target, upload_id)
            raise
        return str(reply["ETag"])

    def open(self, info: ObjectInfo) -> io.BufferedReader:
        """A binary file over the object as listed (same ETag), streamed: memory stays one
        buffer whatever the size."""
        return io.BufferedReader(ObjectReader(self, info), buffer_size=1 << 20)


def _read_part(source: BinaryIO | io.RawIOBase) -> bytes:
    """Up to one part's worth from ``source`` (short only at its end)."""
    pieces: list[bytes] = []
    got = 0
    while got < PART_BYTES:
        piece = source.read(PART_BYTES - got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


class ObjectReader(io.RawIOBase):
    """A streaming GET that reconnects where it stopped (a ranged GET, still pinned to the
    ETag, so a replaced object fails the read instead of mixing two files)."""

    def __init__(self, store: ObjectStore, info: ObjectInfo) -> None:
        super().__init__()
        self._store = store
        self._info = info
        self._offset = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def _open_body(self) -> Any:
        extra = {"Range": f"bytes={self._offset}-"} if self._offset else {}
        try:
            with self._store._calling(f"read {self._info.name}"):
                reply = self._store.client.get_object(
                    Bucket=self._store.bucket,
                    Key=self._store.key(self._info.name),
                    IfMatch=self._info.etag,
                    **extra,
                )
        except PreconditionFailed:
            raise ConflictError(
                f"{self._info.name} was replaced in the object store while it was being read: "
                "try again"
            ) from None
        return reply["Body"]

    def readinto(self, buffer: Any) -> int:
        if self._offset >= self._info.size:
            return 0
        for attempt in range(_READ_RETRIES + 1):
            try:
                if self._body is None:
                    self._body = self._open_body()
                data = self._body.read(len(buffer))
                if not data:
                    raise OSError(f"the object store ended {self._info.name} early")
                break
            except FileNotFoundError:
                self._drop_body()
                raise
            except (botocore.exceptions.BotoCoreError, Urllib3Error, OSError) as exc:
                self._drop_body()
                if attempt == _READ_RETRIES:
                    raise StorageUnavailableError(
                        f"reading {self._info.name} from {self._store} failed: {exc}"
                    ) from exc
                log.warning("reading %s failed (%s); resuming", self._info.name, exc)
        n = len(data)
        buffer[:n] = data
        self._offset += n
        return n

    def _drop_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:
                log.debug("closing a failed stream failed", exc_info=True)
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
