"""Reading CDC case files as real releases write them.

Two ways in, one set of rules:

- :class:`EncodedCsv` streams a file of any size in chunks and turns each chunk into small
  integer codes (the training path: it never parses dates and never holds the file). It reads
  with pyarrow (:mod:`shared.data.fast_reader`) and, wherever pyarrow could read a file
  differently, with the pandas reader below, which sets the rules;
- :func:`load_cases` reads a small file whole into a tidy DataFrame, dates included (for
  inspection, tests and the API's dataset summary).

Both accept the variants of real files (aliased or padded headers, a BOM, missing date
columns, three date formats, empty markers, CRLF) and fail with one :class:`DataError` whose
message names the problem (never a raw pandas exception).

Work is bounded before pandas sees a byte: :mod:`shared.data.header` refuses from the first
64 KiB a file that is not CSV text or whose header is absurd. Cells are text, never evaluated:
a spreadsheet formula such as ``=1+1`` in a feature column is one more out-of-vocabulary value
(read as ``Missing``, counted).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from shared.data.fast_reader import FallBack, encoded_blocks
from shared.data.header import (
    SNIFF_BYTES,
    Header,
    ragged_error,
    read_header,
)
from shared.data.schema import (
    ALL_COLUMNS,
    DATE_COLUMNS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    MISSING,
    VOCABULARY,
    is_empty_marker,
    label_to_int,
)
from shared.data.source import CsvSource, open_source, source_size
from shared.errors import DataError

#: Cells per parsed chunk at most (the default chunk of a 12-column file): a file with more
#: columns is read in fewer rows at a time, so a chunk's memory does not grow with its width.
_CELLS_PER_CHUNK = 250_000 * len(ALL_COLUMNS)
_DATE_FORMATS = ("%Y/%m/%d", "%Y-%m-%d", "%d/%m/%Y")
#: Index of ``Missing`` in each feature vocabulary, where invalid and empty cells go.
MISSING_CODE = {col: VOCABULARY[col].index(MISSING) for col in FEATURE_COLUMNS}
_NO_ROWS = "the file has a header but no data rows"
_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_UNCLOSED = re.compile(r"EOF inside string starting at row (\d+)")
_COLUMNS = (*FEATURE_COLUMNS, LABEL_COLUMN)


@dataclass
class EncodedChunk:
    """One chunk of rows as codes: ``features[:, j]`` indexes ``VOCABULARY[FEATURE_COLUMNS[j]]``;
    ``labels`` is 1 (Yes), 0 (No) or -1 (unlabelled)."""

    features: np.ndarray
    labels: np.ndarray
    first_row: int
    bytes_read: int


@dataclass
class LoadReport:
    """What a read found, beyond the rows themselves."""

    rows_read: int = 0
    labelled: int = 0
    positives: int = 0
    negatives: int = 0
    invalid_values: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(FEATURE_COLUMNS, 0)
    )

    @property
    def unlabelled(self) -> int:
        return self.rows_read - self.labelled

    def check_labels(self) -> None:
        """A file is only trainable if both outcomes occur among its labelled rows."""
        if self.rows_read == 0:
            raise DataError(_NO_ROWS)
        if self.labelled == 0:
            raise DataError(
                f"no row has a {LABEL_COLUMN} of Yes or No: there is nothing to learn from "
                f"({self.rows_read} rows, all Missing/Unknown/blank)"
            )
        if self.positives == 0 or self.negatives == 0:
            only = "No" if self.positives == 0 else "Yes"
            raise DataError(
                f"every labelled row has {LABEL_COLUMN} = {only}: both Yes and No are needed "
                f"({self.labelled} labelled rows)"
            )


class HashingReader(io.RawIOBase):
    """A binary file wrapper that hashes what passes through it and counts the bytes, so one
    read of a dataset gives its rows, its sha256 and the progress fraction."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes_read += n
        return n

    def drain(self) -> None:
        """Hash whatever the parser did not read (it may stop before the end)."""
        while chunk := self._raw.read(1 << 20):
            self.sha256.update(chunk)
            self.bytes_read += len(chunk)


def _rows_per_chunk(header: Header, chunk_rows: int) -> int:
    """``chunk_rows``, or fewer for a wide file: at most :data:`_CELLS_PER_CHUNK` cells."""
    return max(1, min(chunk_rows, _CELLS_PER_CHUNK // max(header.columns, 1)))


def _code_table(column: str, categories: pd.Index | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct raw value of a chunk: its vocabulary code, and whether it was invalid."""
    vocab = VOCABULARY[column]
    lookup = {value: i for i, value in enumerate(vocab)}
    missing = MISSING_CODE[column]
    codes = np.empty(len(categories), dtype=np.int8)
    invalid = np.zeros(len(categories), dtype=bool)
    for i, raw in enumerate(categories):
        value = str(raw).strip()
        if value in lookup:
            codes[i] = lookup[value]
        else:
            codes[i] = missing
            invalid[i] = not is_empty_marker(value)
    return codes, invalid


def _as_categorical(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series
    return series.astype("category")


def _encode_column(column: str, series: pd.Series, report: LoadReport) -> np.ndarray:
    cat = _as_categorical(series)
    table, invalid = _code_table(column, cat.cat.categories)
    raw_codes = cat.cat.codes.to_numpy()
    # Code -1 is a NaN cell (pandas' own idea of empty): the appended last entry, Missing.
    codes = np.append(table, np.int8(MISSING_CODE[column]))[raw_codes]
    if invalid.any():
        counts = np.bincount(raw_codes[raw_codes >= 0], minlength=len(table))
        report.invalid_values[column] += int(counts[invalid].sum())
    return codes


def _encode_labels(series: pd.Series) -> np.ndarray:
    cat = _as_categorical(series)
    table = [label_to_int(str(raw)) for raw in cat.cat.categories]
    # Unlabelled values, and code -1 (a NaN cell) through the appended last entry, are -1.
    lookup = np.array([-1 if v is None else v for v in table] + [-1], dtype=np.int8)
    return lookup[cat.cat.codes.to_numpy()]


def _parser_error(exc: Exception) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return DataError(
            f"the file is not UTF-8 text ({exc.reason} past the first {SNIFF_BYTES // 1024} KiB), "
            "so it is not a CSV this loader reads"
        )
    message = str(exc).strip()
    if match := _RAGGED.search(message):
        expected, line, fields = (int(g) for g in match.groups())
        return ragged_error(line, fields, expected)
    if match := _UNCLOSED.search(message):
        row = int(match.group(1))
        return DataError(
            f"the file is not a well-formed CSV: a quoted value opened in data row {row:,} is "
            'never closed (an unbalanced " quote: the rest of the file would be one value)',
            details={"row": row},
        )
    return DataError(f"the file is not a well-formed CSV: {message}")


def _csv_frames(source: IO[bytes], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of a CSV in frames of ``chunk_rows``, every column categorical with cells as
    written (no NA guessing). Empty frames are skipped; parse errors become :class:`DataError`.

    Every column is read, not just the ones used: pandas' ``usecols`` silently drops the extra
    fields of a ragged row instead of reporting it.
    """
    try:
        reader = pd.read_csv(
            source,
            dtype="category",
            encoding="utf-8-sig",
            chunksize=chunk_rows,
            keep_default_na=False,
            na_values=[],
            index_col=False,
            skipinitialspace=False,
            engine="c",
        )
        for frame in reader:
            if len(frame):
                yield frame
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise _parser_error(exc) from None


def _select(frame: pd.DataFrame, header: Header, columns: tuple[str, ...]) -> pd.DataFrame:
    """The schema columns of a parsed frame, under their schema names."""
    sources = [header.source_names[c] for c in columns]
    absent = [s for s in sources if s not in frame.columns]
    if absent:  # the CSV parser read the header differently from read_header
        raise DataError(
            f"the file's header could not be read consistently (columns {absent!r} not found)"
        )
    selected = frame[sources]
    selected.columns = pd.Index(columns)
    return selected


def _count_labels(report: LoadReport, labels: np.ndarray) -> None:
    report.rows_read += len(labels)
    positives = int((labels == 1).sum())
    negatives = int((labels == 0).sum())
    report.positives += positives
    report.negatives += negatives
    report.labelled += positives + negatives


class _Rechunker:
    """Blocks of any size in, chunks of exactly ``rows`` rows out. A chunk leaves only once a
    row past it exists, so the last chunk is only given out once the file has been read to its
    end (its ``bytes_read`` is then the file's size, and the sha256 is known)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._features: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._pending = 0

    def add(self, features: np.ndarray, labels: np.ndarray) -> None:
        self._features.append(features)
        self._labels.append(labels)
        self._pending += len(labels)

    def take(self, final: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while self._pending > self.rows or (final and self._pending):
            features = (
                np.concatenate(self._features) if len(self._features) > 1 else self._features[0]
            )
            labels = np.concatenate(self._labels) if len(self._labels) > 1 else self._labels[0]
            n = min(self.rows, self._pending)
            self._features, self._labels = [features[n:]], [labels[n:]]
            self._pending -= n
            yield features[:n], labels[:n]


def _label_table(values: Sequence[str]) -> np.ndarray:
    return np.array([-1 if (v := label_to_int(raw)) is None else v for raw in values], np.int8)


class EncodedCsv:
    """A one-pass stream over a case file as integer codes, with the report and the file's
    sha256 filled in as it goes (complete once iteration ends; the last chunk's
    ``bytes_read`` is the file's size).

    Rows come from pyarrow (:mod:`shared.data.fast_reader`); where a file holds anything in
    which pyarrow and pandas could differ, the rows from there on come from the pandas reader
    (:func:`_csv_frames`), read from the start and skipping the rows already handed over, so
    the rows, the counts and the errors are the pandas reader's in every case."""

    def __init__(self, path: CsvSource, chunk_rows: int = 250_000) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
        self.path = path
        self.chunk_rows = chunk_rows
        self.header = read_header(path)
        self.total_bytes = source_size(path)
        self.report = LoadReport()
        self.sha256 = ""
        #: Whether the last read needed the pandas reader (see the class); for tests and benches.
        self.fell_back = False

    def __iter__(self) -> Iterator[EncodedChunk]:
        chunks = _Rechunker(_rows_per_chunk(self.header, self.chunk_rows))
        first_row = handed = bytes_read = 0
        sha256: str | None = None
        try:
            with open_source(self.path) as raw:
                stream, blocks = encoded_blocks(raw, self.header, _code_table, _label_table)
                for block in blocks:
                    for col, n in block.invalid.items():
                        self.report.invalid_values[col] += n
                    chunks.add(block.features, block.labels)
                    handed += len(block.labels)
                    bytes_read = stream.bytes_read
                    for features, labels in chunks.take():
                        yield self._chunk(features, labels, first_row, bytes_read)
                        first_row += len(labels)
                sha256, bytes_read = stream.sha256.hexdigest(), stream.bytes_read
        except FallBack:
            self.fell_back = True
        if sha256 is None:
            with open_source(self.path) as raw:
                reader = HashingReader(raw)
                buffered = io.BufferedReader(reader, buffer_size=1 << 20)
                skip = handed
                for frame in _csv_frames(buffered, chunks.rows):
                    if skip >= len(frame):
                        skip -= len(frame)
                        continue
                    rows = _select(frame.iloc[skip:] if skip else frame, self.header, _COLUMNS)
                    skip = 0
                    features = np.column_stack(
                        [_encode_column(c, rows[c], self.report) for c in FEATURE_COLUMNS]
                    )
                    chunks.add(features, _encode_labels(rows[LABEL_COLUMN]))
                    bytes_read = max(bytes_read, reader.bytes_read)
                    for features, labels in chunks.take():
                        yield self._chunk(features, labels, first_row, bytes_read)
                        first_row += len(labels)
                buffered.read()
                reader.drain()
                sha256, bytes_read = reader.sha256.hexdigest(), reader.bytes_read
        self.sha256 = sha256
        for features, labels in chunks.take(final=True):
            yield self._chunk(features, labels, first_row, bytes_read)
            first_row += len(labels)

    def _chunk(
        self, features: np.ndarray, labels: np.ndarray, first_row: int, bytes_read: int
    ) -> EncodedChunk:
        _count_labels(self.report, labels)
        return EncodedChunk(features, labels, first_row, bytes_read)


@dataclass
class DatasetSummary:
    """What the API and CLI say about a dataset: its size, hash and label counts."""

    name: str
    size_bytes: int
    sha256: str
    rows: int
    labelled: int
    positives: int
    negatives: int
    invalid_values: dict[str, int]


def validate_dataset(path: CsvSource, chunk_rows: int = 250_000) -> DatasetSummary:
    """Read a whole file with the training rules; raise :class:`DataError` if it is unusable."""
    stream = EncodedCsv(path, chunk_rows)
    for _ in stream:
        pass
    stream.report.check_labels()
    report = stream.report
    return DatasetSummary(
        name=path.name,
        size_bytes=stream.total_bytes,
        sha256=stream.sha256,
        rows=report.rows_read,
        labelled=report.labelled,
        positives=report.positives,
        negatives=report.negatives,
        invalid_values=dict(report.invalid_values),
    )


def parse_dates(series: pd.Series) -> pd.Series:
    """Parse a date column written in any of the formats real releases use; a bad or empty
    date (or one outside the years 1677-2262 that ``datetime64[ns]`` holds) becomes NaT and
    never fails a load."""
    text = series.astype("string").str.strip()
    result = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
    for fmt in _DATE_FORMATS:
        todo = result.isna() & text.notna() & (text != "")
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        ok = parsed.notna() & (parsed >= pd.Timestamp.min) & (parsed <= pd.Timestamp.max)
        if ok.any():
            result.loc[ok.index[ok]] = parsed[ok].dt.as_unit("ns")
    return result


def decode_features(codes: np.ndarray) -> pd.DataFrame:
    """Codes back to the CDC strings, one column per feature."""
    return pd.DataFrame(
        {
            col: np.asarray(VOCABULARY[col], dtype=object)[codes[:, j]]
            for j, col in enumerate(FEATURE_COLUMNS)
        }
    )


def load_cases(path: Path) -> tuple[pd.DataFrame, LoadReport]:
    """Read a small case file whole: canonical columns, features in the CDC vocabulary,
    dates parsed (absent date columns come back as all-NaT), ``death_yn`` as written."""
    header = read_header(path)
    present_dates = tuple(c for c in DATE_COLUMNS if c in header.present)
    columns = (*present_dates, *FEATURE_COLUMNS, LABEL_COLUMN)
    with path.open("rb") as fh:
        chunks = _csv_frames(fh, _rows_per_chunk(header, 1_000_000))
        frames = [_select(f, header, columns) for f in chunks]
    if not frames:
        raise DataError(_NO_ROWS)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    report = LoadReport()
    codes = np.column_stack([_encode_column(c, frame[c], report) for c in FEATURE_COLUMNS])
    decoded = decode_features(codes)
    labels = _encode_labels(frame[LABEL_COLUMN])
    _count_labels(report, labels)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in DATE_COLUMNS:
        out[col] = (
            parse_dates(frame[col]).to_numpy()
            if col in present_dates
            else np.full(len(frame), np.datetime64("NaT", "ns"))
        )
    for col in FEATURE_COLUMNS:
        out[col] = decoded[col].to_numpy()
    out[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("string").str.strip().to_numpy()
    return out, report
