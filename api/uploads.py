"""Reading a multipart upload as it arrives, instead of letting the framework spool it whole.

FastAPI's ``UploadFile`` parses the entire body into a temp file (outside the datasets folder)
before the endpoint runs, so a size limit could only be enforced after the fact. Here the
``file`` part is streamed: :class:`MultipartFileStream` feeds the body to python-multipart's
push parser chunk by chunk, and :class:`BlockingUploadReader` lets the sync storage code
(:meth:`shared.datasets.DatasetStore.store_upload`, run in a worker thread) pull those chunks
from the event loop. The limit is then enforced the moment it is crossed.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio.from_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from shared.errors import DomainError, UploadTooLargeError

UPLOAD_FIELD = "file"
#: Room for the multipart envelope (boundaries, part headers) on top of the file's own bytes.
ENVELOPE_BYTES = 64 * 1024


class InvalidUploadError(DomainError):
    status_code = 422
    code = "invalid_upload"


class UnsupportedUploadTypeError(DomainError):
    status_code = 415
    code = "unsupported_media_type"


class MultipartFileStream:
    """The bytes of the first ``file`` part of a multipart/form-data request, as they arrive.

    Other parts are skipped without being kept; the whole body is capped at the file limit
    plus :data:`ENVELOPE_BYTES`, so nothing a client sends can grow memory or disk unbounded.
    """

    def __init__(self, request: Request, max_bytes: int, field: str = UPLOAD_FIELD) -> None:
        media_type, options = parse_options_header(request.headers.get("content-type"))
        if media_type != b"multipart/form-data":
            raise UnsupportedUploadTypeError(
                f"upload the dataset as multipart/form-data with a {field!r} file field",
                details={"content_type": request.headers.get("content-type")},
            )
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidUploadError("the multipart/form-data content type has no boundary")
        self._max_body = max_bytes + ENVELOPE_BYTES
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise UploadTooLargeError(
                f"the upload is larger than the limit of {max_bytes} bytes",
                details={"max_bytes": max_bytes},
            )
        self._max_bytes = max_bytes
        self._field = field
        self._body: AsyncIterator[bytes] = request.stream()
        self._body_bytes = 0
        self._ended = False
        self._ready: deque[bytes] = deque()
        self._header_name = b""
        self._header_value = b""
        self._disposition: bytes | None = None
        self._in_file = False
        self._file_started = False
        self._file_done = False
        self.filename: str | None = None
        callbacks: Any = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    # -- parser callbacks ---------------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._disposition = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == self._field and not self._file_started and b"filename" in options:
            self._in_file = self._file_started = True
            self.filename = options[b"filename"].decode("utf-8", "replace")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and end > start:
            self._ready.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_done = True

    # -- reading ------------------------------------------------------------------------------

    async def _feed(self) -> bool:
        """Push the next body chunk through the parser; False once the body has ended."""
        if self._ended:
            return False
        try:
            chunk = await self._body.__anext__()
        except StopAsyncIteration:
            self._ended = True
            return False
        self._body_bytes += len(chunk)
        if self._body_bytes > self._max_body:
            raise UploadTooLargeError(
                f"the upload is larger than the limit of {self._max_bytes} bytes",
                details={"max_bytes": self._max_bytes},
            )
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidUploadError(f"the multipart body is malformed: {exc}") from None
        return True

    async def start(self) -> str | None:
        """Read up to the start of the file part; its client-side filename (a hint only)."""
        while not self._file_started:
            if not await self._feed():
                raise InvalidUploadError(
                    f"the form has no file field named {self._field!r}",
                    details={"field": self._field},
                )
        return self.filename

    async def read_chunk(self) -> bytes:
        """The next piece of the file; ``b""`` once it is complete."""
        while not self._ready:
            if self._file_done:
                return b""
            if not await self._feed():
                raise InvalidUploadError("the request body ended in the middle of the file")
        return self._ready.popleft()


class BlockingUploadReader(io.RawIOBase):
    """A binary file for sync code in an anyio worker thread: each read waits on the event loop
    for the next chunk of the upload, so the thread never holds more than one chunk."""

    def __init__(self, stream: MultipartFileStream) -> None:
        super().__init__()
        self._stream = stream
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            self._pending = anyio.from_thread.run(self._stream.read_chunk)
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
