"""The training path's CSV reader: pyarrow on both cores, exact or not at all.

Chosen by measurement (``python -m bench.reader``, see the README). The file is read in
segments of :data:`SEGMENT_BYTES`, each cut after its last line break; up to
:data:`PARSE_AHEAD` segments are read ahead and parsed by pyarrow on a pool of
:data:`PARSERS` threads (pyarrow releases the GIL), each segment as one block, while this
thread hashes the bytes and turns the segment parsed before into codes. Only the eight columns training uses are
converted, each dictionary-encoded as it is parsed, so that a segment's codes are one Python
lookup per distinct value and one numpy ``take`` per column. Memory is a few segments,
whatever the file.

Why one block per segment: pyarrow's parser reads a quoted line break correctly within a
block; what costs is finding block boundaries that respect quotes (``newlines_in_values``, a
serial pass over every byte that took a third of the reader's time). Here a segment is cut at
its last line break without looking at quotes, and the cut is checked afterwards instead: an
end marker row is appended to each segment, and a quoted value left open at the cut swallows
it. Such a segment is parsed again joined to the next one (whose own parse, begun inside a
quoted value, is dropped); a real CDC file never needs this.

It must give exactly what the pandas reader of :mod:`shared.data.loader` gives, so everything
in which pyarrow and pandas could differ makes it stop with :class:`FallBack`, and the caller
carries on with the pandas reader from the first row not yet handed over (its rows, its counts,
its :class:`~shared.errors.DataError` messages are then today's by construction):

- a row with more or fewer fields than the header, or a line of spaces (pyarrow reports each to
  the segment's invalid-row handler; pandas pads a short row, skips a line of spaces and refuses
  a long row with its line number);
- bytes that are not UTF-8 anywhere in the file (pyarrow only checks the columns it converts);
- a quoted value still open at the end of the file (pandas refuses it, pyarrow takes the rest
  of the file as the value): the last segment's end marker is swallowed, with nothing to join;
- a record, or a quoted value, longer than :data:`MAX_SEGMENT_BYTES`;
- any error of pyarrow's own (a header it reads differently, say).

Well-formed files, whatever their size, never fall back.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from shared.data.header import SNIFF_BYTES, Header
from shared.data.schema import FEATURE_COLUMNS, LABEL_COLUMN

#: Bytes read, cut and parsed as one block (about 65,000 rows of a CDC file).
SEGMENT_BYTES = 8 << 20
#: A segment joined to the next ones while a quoted value stays open grows to this at most.
MAX_SEGMENT_BYTES = 64 << 20
#: Threads parsing segments: one per core, up to four (a training shares its host with the
#: services; pyarrow's own pool would serialise segments behind its block-boundary pass).
PARSERS = min(4, os.cpu_count() or 1)
#: Segments read ahead of the one being encoded: one more than the parsers keeps them busy.
PARSE_AHEAD = PARSERS + 1
#: Distinct raw values remembered per column: real files have a handful; a file full of
#: garbage must not grow memory (past it, values are still looked up, only not remembered).
_MAX_REMEMBERED = 4096
_DICTIONARY = pa.dictionary(pa.int32(), pa.binary())

#: ``(column, distinct raw values) -> (codes, invalid)``: the loader's rules for one column.
CodeTable = Callable[[str, Sequence[str]], tuple[np.ndarray, np.ndarray]]
#: ``distinct raw labels -> 1, 0 or -1 each``.
LabelTable = Callable[[Sequence[str]], np.ndarray]


class FallBack(Exception):
    """The file holds something only the pandas reader reproduces exactly (see the module)."""


class Segments:
    """The file's bytes in segments that end with a line break: hashed, counted and checked to
    be UTF-8 as they are read. A segment's bytes are followed, in the same buffer, by room for
    the end marker row, so that parsing it with its marker costs no copy."""

    def __init__(self, raw: IO[bytes], end_row: bytes) -> None:
        self._raw = raw
        self.end_row = end_row
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._tail = b""
        #: Buffers of segments already parsed and encoded: a fresh one would cost its pages
        #: zeroed and faulted in again, about a tenth of the reader's time.
        self._free: list[bytearray] = []
        self.ended = False
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def next(self) -> memoryview | None:
        """The next segment with its end marker row, or ``None`` at the end of the file."""
        if self.ended:
            return None
        start = len(self._tail)
        # Room for the tail and as much again to read (a record longer than a segment grows it).
        capacity = max(SEGMENT_BYTES, 2 * start)
        buffer = self._buffer(capacity + len(self.end_row))
        view = memoryview(buffer)
        view[:start] = self._tail
        got = self._fill(view[start:capacity])
        # Pure ASCII (the usual case) needs no decoding: one pass over the whole buffer, no copy
        # (the tail was checked with the segment before; the rest is ASCII or checked later).
        if got and (self._utf8.getstate()[0] or not buffer.isascii()):
            self._decode(bytes(view[start : start + got]))
        end = start + got
        if got < capacity - start:  # the end of the file
            self.ended = True
            self._decode(b"", final=True)
            cut = end
            self._tail = b""
            if not end:
                return None
        else:
            cut = buffer.rfind(b"\n", 0, end) + 1
            if not cut:  # a record longer than a segment: the tail grows until it has a break
                if end >= MAX_SEGMENT_BYTES:
                    raise FallBack("a record longer than the largest segment")
                self._tail = bytes(view[:end])
                return self.next()
            self._tail = bytes(view[cut:end])
        view[cut : cut + len(self.end_row)] = self.end_row
        return view[: cut + len(self.end_row)]

    def release(self, segment: memoryview) -> None:
        """``segment`` is parsed and its rows encoded (pyarrow's tables hold copies of the
        values, not views of the bytes): its buffer can take a later segment."""
        buffer = segment.obj
        if (
            isinstance(buffer, bytearray)
            and len(buffer) == SEGMENT_BYTES + len(self.end_row)
            and len(self._free) <= PARSE_AHEAD
        ):
            self._free.append(buffer)

    def _buffer(self, size: int) -> bytearray:
        if self._free and size == SEGMENT_BYTES + len(self.end_row):
            return self._free.pop()
        return bytearray(size)

    def _fill(self, into: memoryview) -> int:
        """Fill ``into`` but at the end of the file (a download may return less per read)."""
        got = 0
        while got < len(into):
            n = self._raw.readinto(into[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
        self.sha256.update(into[:got])
        self.bytes_read += got
        return got

    def _decode(self, data: bytes, final: bool = False) -> None:
        try:
            self._utf8.decode(data, final)
        except UnicodeDecodeError:
            raise FallBack("not UTF-8") from None


@dataclass
class EncodedBlock:
    """One segment as codes, as :class:`shared.data.loader.EncodedChunk` holds them."""

    features: np.ndarray
    labels: np.ndarray
    invalid: dict[str, int]


class _Lookup:
    """Raw value -> code for one column, each distinct value worked out once per read."""

    def __init__(
        self, resolve: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]], marker: bytes
    ) -> None:
        self._resolve = resolve
        # The end marker is in a segment's dictionary, though its row is cut off.
        self._known: dict[bytes, tuple[int, bool]] = {marker: (0, False)}

    def table(self, values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Codes and invalid flags of a segment's dictionary, in its order."""
        new = [v for v in values if v not in self._known]
        if new:
            codes, invalid = self._resolve([v.decode("utf-8", "replace") for v in new])
            found = dict(zip(new, zip(codes.tolist(), invalid.tolist(), strict=True), strict=True))
            if len(self._known) < _MAX_REMEMBERED:
                self._known.update(found)
        else:
            found = {}
        pairs = [self._known.get(v) or found[v] for v in values]
        return (
            np.array([code for code, _ in pairs], dtype=np.int8),
            np.array([bad for _, bad in pairs], dtype=bool),
        )


@dataclass
class _Parsed:
    table: pa.Table | None  # None: pyarrow refused the segment
    irregular: bool


class _SegmentParser:
    """One segment (with its end marker row) -> the eight columns, as pyarrow reads them."""

    def __init__(self, header: Header, columns: Sequence[str], marker: bytes) -> None:
        self.marker = marker
        self._convert = pacsv.ConvertOptions(
            include_columns=[header.source_names[c] for c in columns],
            column_types=dict.fromkeys([header.source_names[c] for c in columns], _DICTIONARY),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            check_utf8=False,
        )
        #: Every column's name as pyarrow reads the header; segments after the first have none.
        self.names: list[str] | None = None

    def read_names(self, first: memoryview) -> None:
        """The header's names, as pyarrow reads them from the first segment."""
        try:
            reader = pacsv.open_csv(
                pa.BufferReader(pa.py_buffer(first)),
                read_options=pacsv.ReadOptions(
                    use_threads=False, block_size=min(len(first), 2 * SNIFF_BYTES)
                ),
                convert_options=pacsv.ConvertOptions(check_utf8=False),
            )
        except pa.ArrowException as exc:
            raise FallBack(str(exc)) from None
        self.names = reader.schema.names
        reader.close()

    def parse(self, segment: memoryview | bytes, first: bool) -> _Parsed:
        """Parsed as one block: pyarrow's parser reads quoted line breaks within a block; only
        its search for block boundaries would need ``newlines_in_values`` (see the module)."""
        irregular = False

        def on_invalid_row(_row: Any) -> str:
            nonlocal irregular
            irregular = True
            return "skip"

        try:
            table = pacsv.read_csv(
                pa.BufferReader(pa.py_buffer(segment)),
                read_options=pacsv.ReadOptions(
                    use_threads=False,
                    block_size=len(segment) + 1,
                    column_names=None if first else self.names,
                ),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
                convert_options=self._convert,
            )
        except pa.ArrowException:
            return _Parsed(None, irregular)
        return _Parsed(table, irregular)

    def ends_with_marker(self, parsed: _Parsed) -> bool:
        """Whether the segment was cut outside a quoted value (its marker row came through)."""
        table = parsed.table
        if table is None or not table.num_rows:
            return False
        last = table.column(0)[table.num_rows - 1]
        return bool(last.is_valid and last.as_py() == self.marker)


def _parsed_segments(segments: Segments, parser: _SegmentParser) -> Iterator[pa.RecordBatch]:
    """The segments' rows, in file order, without their marker rows; parsed :data:`PARSERS` at
    a time while the caller works on the rows before. The pool is shut down (its queued work
    cancelled) however the caller stops iterating."""
    first = segments.next()
    if first is None:
        return
    parser.read_names(first)
    pool = ThreadPoolExecutor(PARSERS, thread_name_prefix="csv-parse")
    pending: deque[tuple[memoryview, Future[_Parsed]]] = deque()
    pending.append((first, pool.submit(parser.parse, first, True)))
    is_first = True
    try:
        while True:
            while len(pending) < PARSE_AHEAD and (segment := segments.next()) is not None:
                pending.append((segment, pool.submit(parser.parse, segment, False)))
            if not pending:
                break
            segment, future = pending.popleft()
            parsed = future.result()
            # A joined segment's buffers are left to the collector: a dropped parse of one of
            # them may still be reading it.
            joined = not parser.ends_with_marker(parsed)
            if joined:
                parsed = _joined(segment, parsed, pending, segments, parser, is_first)
            is_first = False
            if parsed.irregular:
                raise FallBack("a row pandas reads differently")
            assert parsed.table is not None
            batches = parsed.table.to_batches()
            for i, batch in enumerate(batches):
                last = i == len(batches) - 1
                if last and batch.num_rows > 1:
                    yield batch.slice(0, batch.num_rows - 1)
                elif not last and batch.num_rows:
                    yield batch
            if not joined:
                segments.release(segment)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _joined(
    segment: memoryview,
    parsed: _Parsed,
    pending: deque[tuple[memoryview, Future[_Parsed]]],
    segments: Segments,
    parser: _SegmentParser,
    first: bool,
) -> _Parsed:
    """A segment cut inside a quoted value, parsed again joined to the segments after it until
    a cut falls outside one. The dropped parses of those began inside the quoted value."""
    end_row = len(segments.end_row)
    pieces = [bytes(segment[:-end_row])]
    size = len(pieces[0])
    while not parser.ends_with_marker(parsed):
        following: memoryview | None
        if pending:
            following, dropped = pending.popleft()
            dropped.cancel()
        else:
            following = segments.next()
        if following is None:
            raise FallBack("a quoted value is still open at the end of the file")
        pieces.append(bytes(following[:-end_row]))
        size += len(pieces[-1])
        if size > MAX_SEGMENT_BYTES:
            raise FallBack("a quoted value longer than the largest segment")
        parsed = parser.parse(b"".join([*pieces, segments.end_row]), first)
    return parsed


def encoded_blocks(
    raw: IO[bytes],
    header: Header,
    code_table: CodeTable,
    label_table: LabelTable,
) -> tuple[Segments, Iterator[EncodedBlock]]:
    """The rows of ``raw`` (its header already checked) as codes, segment by segment, and the
    reader that hashes and counts the bytes. Raises :class:`FallBack` (see the module)."""
    columns = (*FEATURE_COLUMNS, LABEL_COLUMN)
    marker = f"rvt-end-{secrets.token_hex(8)}".encode()
    # A line break ends the segment's last record (an empty line is skipped), then one row of
    # the header's width whose every cell is the marker.
    segments = Segments(raw, b"\n" + b",".join([marker] * max(header.columns, 1)) + b"\n")
    parser = _SegmentParser(header, columns, marker)
    lookups = {col: _Lookup(partial(code_table, col), marker) for col in FEATURE_COLUMNS}

    def label_codes(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return label_table(values), np.zeros(len(values), dtype=bool)

    labels = _Lookup(label_codes, marker)

    def blocks() -> Iterator[EncodedBlock]:
        for batch in _parsed_segments(segments, parser):
            n = batch.num_rows
            features = np.empty((n, len(FEATURE_COLUMNS)), dtype=np.int8)
            invalid = dict.fromkeys(FEATURE_COLUMNS, 0)
            for j, col in enumerate(FEATURE_COLUMNS):
                features[:, j], invalid[col] = _codes(batch.column(j), lookups[col])
            label_codes, _ = _codes(batch.column(len(FEATURE_COLUMNS)), labels)
            yield EncodedBlock(features, label_codes, invalid)

    return segments, blocks()


def _codes(column: pa.DictionaryArray, lookup: _Lookup) -> tuple[np.ndarray, int]:
    """A dictionary column as codes, and how many of its cells were invalid."""
    table, invalid = lookup.table(column.dictionary.to_pylist())
    indices = column.indices.to_numpy()
    bad = 0
    if invalid.any():
        bad = int(np.bincount(indices, minlength=len(table))[invalid].sum())
    return table[indices], bad
