"""The training path's CSV reader: pyarrow's streaming CSV reader, exact or not at all.

Chosen by measurement (``python -m bench.reader``, see the README): it reads a binary stream
(a file, or an object being downloaded) in blocks of 1 MiB, parses each on a thread of its own
(pyarrow releases the GIL) while this thread turns the previous one into codes, and converts
only the eight columns training uses, each dictionary-encoded as it is parsed, so that the
codes of a block are one Python lookup per distinct value and one numpy ``take`` per column.
Memory is a few blocks, whatever the file. (Parsing segments on two threads at once was
tried: on these 2 cores it cost more CPU in all, for copies and hashing in this thread, and
was no faster.)

It must give exactly what the pandas reader of :mod:`shared.data.loader` gives, so everything
in which pyarrow and pandas could differ makes it stop with :class:`FallBack`, and the caller
carries on with the pandas reader from the first row not yet handed over (its rows, its counts,
its :class:`~shared.errors.DataError` messages are then today's by construction):

- a row with more or fewer fields than the header, or a line of spaces (pyarrow reports each to
  :func:`_ArrowRows.on_invalid_row`; pandas pads a short row, skips a line of spaces and refuses
  a long row with its line number);
- bytes that are not UTF-8 anywhere in the file (pyarrow only checks the columns it converts);
- a quoted value still open at the end of the file (pandas refuses it, pyarrow takes the rest
  of the file as the value): an end marker row is appended after the file's last byte, and a
  quote still open swallows it;
- any error of pyarrow's own (a value larger than a block, a header it reads differently).

Well-formed files, whatever their size, never fall back.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import queue
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from shared.data.header import Header
from shared.data.schema import FEATURE_COLUMNS, LABEL_COLUMN

#: Bytes pyarrow parses at a time (its default).
BLOCK_BYTES = 1 << 20
#: Blocks read ahead of the batches handed out: enough for pyarrow to keep parsing (a batch
#: needs the block after it, for a row that straddles them), few enough to bound memory.
READ_AHEAD_BLOCKS = 4
_WAIT_S = 0.2
#: Parsed batches waiting for the encoder at most (each about 8,000 rows of codes to be).
PARSED_AHEAD = 2
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


class CheckedStream(io.RawIOBase):
    """The file's bytes as pyarrow reads them: hashed, counted and checked to be UTF-8 as they
    pass, then followed by ``tail`` (the end marker), which is neither hashed nor counted.

    pyarrow reads up to 32 blocks ahead of the batches it has handed out; here a read waits
    while :data:`READ_AHEAD_BLOCKS` blocks are already ahead of them (:meth:`batch_taken`), so
    that memory stays a few blocks whatever the file. A wait that lasts :data:`_WAIT_S` (a
    block that gave no batch) widens the window by one block instead of stalling the read."""

    def __init__(self, raw: IO[bytes], tail: bytes) -> None:
        super().__init__()
        self._raw = raw
        self._tail = tail
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._ended = False
        self._window = threading.Condition()
        self._blocks_read = 0
        self._blocks_allowed = READ_AHEAD_BLOCKS
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def batch_taken(self) -> None:
        with self._window:
            self._blocks_allowed += 1
            self._window.notify_all()

    def read(self, size: int | None = -1) -> bytes:
        if self._ended:
            n = len(self._tail) if size is None or size < 0 else size
            data, self._tail = self._tail[:n], self._tail[n:]
            return data
        with self._window:
            if not self._window.wait_for(
                lambda: self._blocks_read < self._blocks_allowed, timeout=_WAIT_S
            ):
                self._blocks_allowed += 1
            self._blocks_read += 1
        data = self._fill(size if size and size > 0 else BLOCK_BYTES)
        if not data:
            self._check(b"", final=True)
            self._ended = True
            return self.read(size)
        self.sha256.update(data)
        self.bytes_read += len(data)
        self._check(data)
        return data

    def _fill(self, size: int) -> bytes:
        """``size`` bytes, or fewer at the end only (a download may return less per read)."""
        data = self._raw.read(size)
        if not data or len(data) == size:
            return data
        pieces = [data]
        got = len(data)
        while got < size and (more := self._raw.read(size - got)):
            pieces.append(more)
            got += len(more)
        return b"".join(pieces)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _check(self, data: bytes, final: bool = False) -> None:
        # Pure ASCII (the usual case) needs no decoding, unless a character is pending.
        if data.isascii() and not final and not self._utf8.getstate()[0]:
            return
        try:
            self._utf8.decode(data, final)
        except UnicodeDecodeError:
            raise FallBack("not UTF-8") from None


@dataclass
class EncodedBlock:
    """One pyarrow block as codes, as :class:`shared.data.loader.EncodedChunk` holds them."""

    features: np.ndarray
    labels: np.ndarray
    invalid: dict[str, int]


class _Lookup:
    """Raw value -> code for one column, each distinct value worked out once per read."""

    def __init__(
        self, resolve: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]], marker: bytes
    ) -> None:
        self._resolve = resolve
        # The end marker is in the last block's dictionary, though its row is cut off.
        self._known: dict[bytes, tuple[int, bool]] = {marker: (0, False)}

    def table(self, values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Codes and invalid flags of a block's dictionary, in its order."""
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


class _ArrowRows:
    """pyarrow's streaming reader over a :class:`CheckedStream`, with the end marker's row
    removed and every sign of a difference from pandas turned into :class:`FallBack`."""

    def __init__(self, raw: IO[bytes], header: Header, columns: Sequence[str]) -> None:
        self.marker = f"rvt-end-{secrets.token_hex(8)}".encode()
        # A line break ends the file's last record (an empty line is skipped), then one row of
        # the header's width whose every cell is the marker.
        tail = b"\n" + b",".join([self.marker] * max(header.columns, 1)) + b"\n"
        self.stream = CheckedStream(raw, tail)
        self._names = [header.source_names[c] for c in columns]
        self._irregular = False

    def on_invalid_row(self, _row: Any) -> str:
        self._irregular = True
        return "skip"

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            reader = pacsv.open_csv(
                self.stream,
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=True),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=self.on_invalid_row
                ),
                convert_options=pacsv.ConvertOptions(
                    include_columns=self._names,
                    column_types=dict.fromkeys(self._names, _DICTIONARY),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    null_values=[],
                    check_utf8=False,
                ),
            )
        except pa.ArrowException as exc:
            raise FallBack(str(exc)) from None
        held: pa.RecordBatch | None = None
        for batch in _parsed_ahead(reader, self.stream):
            if self._irregular:
                raise FallBack("a row pandas reads differently")
            # One batch of look-ahead: the last one ends with the marker row.
            if held is not None:
                yield held
            held = batch
        if self._irregular:
            raise FallBack("a row pandas reads differently")
        if held is None or not self._ends_with_marker(held):
            raise FallBack("a quoted value is still open at the end of the file")
        if held.num_rows > 1:
            yield held.slice(0, held.num_rows - 1)

    def _ends_with_marker(self, batch: pa.RecordBatch) -> bool:
        last = batch.column(0)[batch.num_rows - 1]
        return bool(last.is_valid and last.as_py() == self.marker)


def _parsed_ahead(
    reader: pacsv.CSVStreamingReader, stream: CheckedStream
) -> Iterator[pa.RecordBatch]:
    """The reader's non-empty batches, parsed on a thread of their own while the caller works
    on the previous one (pyarrow's streaming reader parses a block only when asked for it, and
    releases the GIL while it does). At most :data:`PARSED_AHEAD` batches wait; the thread is
    stopped and joined, and the reader closed, however the caller stops iterating."""
    ready: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(PARSED_AHEAD)
    stop = threading.Event()

    def hand_over(item: pa.RecordBatch | BaseException | None) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def parse() -> None:
        try:
            while not stop.is_set():
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                stream.batch_taken()
                if batch.num_rows:
                    hand_over(batch)
            hand_over(None)
        except BaseException as exc:  # handed to the caller's thread, raised there
            hand_over(exc)

    parser = threading.Thread(target=parse, name="csv-parse", daemon=True)
    parser.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, pa.ArrowException):
                raise FallBack(str(item))
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        parser.join()
        reader.close()


def encoded_blocks(
    raw: IO[bytes],
    header: Header,
    code_table: CodeTable,
    label_table: LabelTable,
) -> tuple[CheckedStream, Iterator[EncodedBlock]]:
    """The rows of ``raw`` (its header already checked) as codes, block by block, and the
    stream that hashes and counts the bytes. Raises :class:`FallBack` (see the module)."""
    columns = (*FEATURE_COLUMNS, LABEL_COLUMN)
    rows = _ArrowRows(raw, header, columns)
    lookups = {col: _Lookup(partial(code_table, col), rows.marker) for col in FEATURE_COLUMNS}

    def label_codes(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return label_table(values), np.zeros(len(values), dtype=bool)

    labels = _Lookup(label_codes, rows.marker)

    def blocks() -> Iterator[EncodedBlock]:
        for batch in rows.batches():
            n = batch.num_rows
            features = np.empty((n, len(FEATURE_COLUMNS)), dtype=np.int8)
            invalid = dict.fromkeys(FEATURE_COLUMNS, 0)
            for j, col in enumerate(FEATURE_COLUMNS):
                features[:, j], invalid[col] = _codes(batch.column(j), lookups[col])
            label_codes, _ = _codes(batch.column(len(FEATURE_COLUMNS)), labels)
            yield EncodedBlock(features, label_codes, invalid)

    return rows.stream, blocks()


def _codes(column: pa.DictionaryArray, lookup: _Lookup) -> tuple[np.ndarray, int]:
    """A dictionary column as codes, and how many of its cells were invalid."""
    table, invalid = lookup.table(column.dictionary.to_pylist())
    indices = column.indices.to_numpy()
    bad = 0
    if invalid.any():
        bad = int(np.bincount(indices, minlength=len(table))[invalid].sum())
    return table[indices], bad
