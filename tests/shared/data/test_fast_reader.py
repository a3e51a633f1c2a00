"""The training path's reader (pyarrow, shared/data/fast_reader.py) against a plain pandas
reference written here: the same counts, exactly, on files that exercise every loader rule, and
the same coefficients from a training; the pandas fallback where pyarrow could differ.

Files are small and written into ``tmp_path``; pyarrow's block is shrunk to a few KiB so that
each file spans many blocks (and a chunk boundary falls inside every file).
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pytest

import shared.data.fast_reader
from shared.data.loader import EncodedCsv, _csv_frames
from shared.data.schema import (
    ALL_COLUMNS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    MISSING,
    VOCABULARY,
    canonical_header,
    is_empty_marker,
)
from shared.errors import DataError
from shared.model.pipeline import ModelParams
from shared.model.training import Counts, SplitParams, aggregate, fit_counts, train_model
from shared.model.training import test_side_mask as side_mask

SPLIT = SplitParams(test_size=0.3, random_state=5)
_SHAPE = tuple(len(VOCABULARY[c]) for c in FEATURE_COLUMNS)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of 4 KiB: a few dozen rows each."""
    monkeypatch.setattr(shared.data.fast_reader, "SEGMENT_BYTES", 4096)


# --- the reference ----------------------------------------------------------------------------


def reference(path: Path, split: SplitParams) -> tuple[Counts, Counts, dict[str, object]]:
    """Counts the plain way: pandas reads every cell as text, the rules are applied cell by
    cell, and rows are counted per (combination, side, label) with a groupby."""
    frame = pd.read_csv(
        path, dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False
    ).fillna("")
    first = {}
    for name in frame.columns:
        first.setdefault(canonical_header(str(name)), name)
    codes = pd.DataFrame(index=frame.index)
    invalid = {}
    for col in FEATURE_COLUMNS:
        vocab = VOCABULARY[col]
        cells = frame[first[col]].str.strip().tolist()
        codes[col] = [vocab.index(v if v in vocab else MISSING) for v in cells]
        invalid[col] = sum(v not in vocab and not is_empty_marker(v) for v in cells)
    labels = frame[first[LABEL_COLUMN]].str.strip().map({"Yes": 1, "No": 0}).fillna(-1)
    codes["label"] = labels.astype(int)
    codes["test"] = side_mask(0, len(frame), split)
    labelled = codes[codes["label"] >= 0]
    report = {
        "rows": len(frame),
        "labelled": len(labelled),
        "positives": int((labelled["label"] == 1).sum()),
        "invalid_values": invalid,
    }
    sides = []
    for is_test in (False, True):
        side = labelled[labelled["test"] == is_test]
        table = side.groupby([*FEATURE_COLUMNS, "label"]).size().unstack("label", fill_value=0)
        table = table.reindex(columns=[0, 1], fill_value=0)
        combinations = np.array(list(table.index), dtype=np.int64).reshape(-1, 7)
        order = np.argsort(np.ravel_multi_index(tuple(combinations.T), _SHAPE))
        sides.append(
            Counts(
                combinations[order].astype(np.int8),
                table[0].to_numpy()[order],
                table[1].to_numpy()[order],
            )
        )
    return sides[0], sides[1], report


def assert_same_counts(a: Counts, b: Counts) -> None:
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    np.testing.assert_array_equal(a.positives, b.positives)


# --- files that exercise every rule -----------------------------------------------------------


def _row(i: int) -> dict[str, str]:
    """Row ``i``: valid values, with every eleventh row carrying strays of each kind."""
    row = {
        "cdc_case_earliest_dt": "2020/11/10",
        "cdc_report_dt": f"2020-11-{i % 28 + 1:02d}",
        "pos_spec_dt": "",
        "onset_dt": "NA",
    }
    for j, col in enumerate(FEATURE_COLUMNS):
        vocab = VOCABULARY[col]
        row[col] = vocab[(i * (j + 3)) % len(vocab)]
    row[LABEL_COLUMN] = ("No", "Yes", "No", "Missing", "No", "Unknown", "")[i % 7]
    strays = {
        0: ("sex", "male"),  # out of vocabulary
        1: ("hosp_yn", " Yes "),  # padded: valid
        2: ("age_group", "NA"),  # empty marker
        3: ("icu_yn", "=1+1"),  # a formula is text
        4: ("race_ethnicity_combined", "Martian, Non-Hispanic"),  # a comma, quoted
        5: ("medcond_yn", "n/a"),
        6: ("current_status", ""),
        7: (LABEL_COLUMN, " Yes"),
        8: ("sex", "Ma\nle"),  # a quoted line break
    }
    if i % 11 in strays:
        col, value = strays[i % 11]
        row[col] = value
    return row


def write_cases(
    path: Path,
    rows: int,
    *,
    names: dict[str, str] | None = None,
    newline: str = "\n",
    bom: bool = False,
    columns: tuple[str, ...] = ALL_COLUMNS,
    extra_lines: dict[int, str] | None = None,
) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow([(names or {}).get(c, c) for c in columns])
    for i in range(rows):
        if extra_lines and i in extra_lines:
            out.write(extra_lines[i] + newline)
        record = _row(i)
        writer.writerow([record[c] for c in columns])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode())
    return path


FILES = {
    "plain": {},
    "crlf_bom_padded_aliased_headers": {
        "newline": "\r\n",
        "bom": True,
        "names": {"sex": " Sex ", "race_ethnicity_combined": "Race and ethnicity (combined)"},
    },
    "no_date_columns_reordered": {"columns": (LABEL_COLUMN, *reversed(FEATURE_COLUMNS))},
}


@pytest.mark.parametrize("chunk_rows", [37, 250_000])
@pytest.mark.parametrize("kind", list(FILES))
def test_counts_equal_the_pandas_reference(tmp_path: Path, kind: str, chunk_rows: int) -> None:
    path = write_cases(tmp_path / "cases.csv", 700, **FILES[kind])  # type: ignore[arg-type]
    assert path.stat().st_size > 8 * 4096  # many pyarrow blocks
    stream = EncodedCsv(path, chunk_rows=chunk_rows)
    train, test = aggregate(stream, SPLIT)
    assert not stream.fell_back  # the fast path read it
    want_train, want_test, report = reference(path, SPLIT)
    assert_same_counts(train, want_train)
    assert_same_counts(test, want_test)
    got = stream.report
    assert (got.rows_read, got.labelled, got.positives) == (
        report["rows"],
        report["labelled"],
        report["positives"],
    )
    assert got.invalid_values == report["invalid_values"]
    assert sum(got.invalid_values.values()) > 0


def test_coefficients_equal_a_fit_on_the_reference_counts(tmp_path: Path) -> None:
    path = write_cases(tmp_path / "cases.csv", 3000, newline="\r\n", bom=True)
    split = SplitParams()
    run = train_model(path, ModelParams(), split, minimums={}, chunk_rows=512)
    reference_train, _, _ = reference(path, split)
    pipeline, _ = fit_counts(reference_train, ModelParams())
    ours, theirs = (p.named_steps["logisticregression"] for p in (run.pipeline, pipeline))
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=0, atol=1e-9)


# --- where pyarrow could differ: the pandas reader carries on ---------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "2020/11/10,,,,Probable Case,Male",  # a short row: pandas pads it with Missing
        "   ",  # a line of spaces: pandas skips it
    ],
    ids=["short_row", "line_of_spaces"],
)
def test_a_late_irregular_line_falls_back_with_the_same_counts(tmp_path: Path, line: str) -> None:
    # Far past the first blocks and chunks: rows already handed over are not read twice.
    path = write_cases(tmp_path / "cases.csv", 700, extra_lines={650: line})
    stream = EncodedCsv(path, chunk_rows=64)
    train, test = aggregate(stream, SPLIT)
    assert stream.fell_back
    want_train, want_test, report = reference(path, SPLIT)
    assert_same_counts(train, want_train)
    assert_same_counts(test, want_test)
    assert stream.report.rows_read == report["rows"]
    assert stream.report.invalid_values == report["invalid_values"]


def test_a_quote_left_open_in_the_last_column_is_refused(tmp_path: Path) -> None:
    # pyarrow alone would take the rest of the file as the value; pandas refuses the file.
    path = write_cases(tmp_path / "cases.csv", 300)
    with path.open("ab") as out:
        out.write(b'2020/11/10,,,,Probable Case,Male,80+ Years,Hispanic/Latino,No,No,No,"Yes\n')
    with pytest.raises(DataError, match="is never closed"):
        list(EncodedCsv(path, chunk_rows=50))


def test_bytes_that_are_not_utf8_in_a_column_training_skips_are_refused(tmp_path: Path) -> None:
    path = write_cases(tmp_path / "cases.csv", 1000)
    content = path.read_bytes()
    at = content.index(b"2020-11-", len(content) // 2)
    path.write_bytes(content[:at] + b"\xe9" + content[at + 1 :])  # Latin-1 in a date column
    with pytest.raises(DataError, match="not UTF-8"):
        list(EncodedCsv(path))


def test_a_long_row_is_refused_with_the_pandas_readers_message(tmp_path: Path) -> None:
    path = write_cases(tmp_path / "cases.csv", 400)
    lines = path.read_bytes().split(b"\n")
    lines[300] += b",stray"  # past 25 quoted line breaks
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match="has 13 fields but the header has 12") as caught:
        list(EncodedCsv(path, chunk_rows=50))
    with path.open("rb") as raw, pytest.raises(DataError) as by_pandas:
        list(_csv_frames(raw, 50))
    assert caught.value.message == by_pandas.value.message
    assert (
        caught.value.details
        == by_pandas.value.details
        == {
            "line": 301 - 25,
            "fields": 13,
            "expected_fields": 12,
        }
    )


# --- segments cut where the reader cannot see: inside quoted values, inside long records ------


def _with_value(path: Path, row: int, column: str, value: str, rows: int = 400) -> Path:
    """A case file whose row ``row`` holds ``value`` in ``column`` (quoted by csv if needed)."""
    write_cases(path, rows)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return path


def _assert_reads_as_reference(path: Path) -> EncodedCsv:
    stream = EncodedCsv(path, chunk_rows=64)
    train, test = aggregate(stream, SPLIT)
    want_train, want_test, report = reference(path, SPLIT)
    assert_same_counts(train, want_train)
    assert_same_counts(test, want_test)
    assert stream.report.rows_read == report["rows"]
    assert stream.report.invalid_values == report["invalid_values"]
    return stream


def test_a_quoted_value_spanning_several_segments_is_read_without_falling_back(
    tmp_path: Path,
) -> None:
    # About 12 KiB of line breaks in one value: three 4 KiB segments are cut inside it.
    value = "Ma" + "\nle, really" * 1000
    path = _with_value(tmp_path / "cases.csv", 200, "sex", value)
    assert path.read_bytes().count(b"\n") > 1400
    stream = _assert_reads_as_reference(path)
    assert not stream.fell_back


def test_a_quoted_value_longer_than_the_largest_segment_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared.data.fast_reader, "MAX_SEGMENT_BYTES", 16_384)
    path = _with_value(tmp_path / "cases.csv", 200, "sex", "Ma" + "\nle" * 8000)
    stream = _assert_reads_as_reference(path)
    assert stream.fell_back


def test_a_record_longer_than_a_segment_is_read_without_falling_back(tmp_path: Path) -> None:
    # 20 KiB in a date column (no quotes, no line break): the segment grows to hold the record.
    path = _with_value(tmp_path / "cases.csv", 300, "onset_dt", "x" * 20_000)
    stream = _assert_reads_as_reference(path)
    assert not stream.fell_back


@pytest.mark.parametrize("ending", ["", "\n\n\n"], ids=["no_final_line_break", "blank_lines"])
def test_the_last_record_is_read_however_the_file_ends(tmp_path: Path, ending: str) -> None:
    path = write_cases(tmp_path / "cases.csv", 300)
    path.write_bytes(path.read_bytes().rstrip(b"\n") + ending.encode())
    stream = _assert_reads_as_reference(path)
    assert not stream.fell_back
    assert stream.report.rows_read == 300


@pytest.mark.parametrize("kind", list(FILES))
def test_the_sha256_is_the_files_though_segments_are_hashed_beside_the_parsing(
    tmp_path: Path, kind: str
) -> None:
    # Each segment's tail is overwritten by its end marker row right after the cut, while the
    # hashing thread may still be reading: the hash must come from what was read, not after.
    path = write_cases(tmp_path / "cases.csv", 700, **FILES[kind])  # type: ignore[arg-type]
    stream = EncodedCsv(path, chunk_rows=64)
    for _ in stream:
        pass
    assert stream.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_read_stopped_early_leaves_no_parsing_thread(tmp_path: Path) -> None:
    path = write_cases(tmp_path / "cases.csv", 700)
    before = {t.ident for t in threading.enumerate()}
    chunks = iter(EncodedCsv(path, chunk_rows=37))
    next(chunks)
    chunks.close()  # type: ignore[attr-defined]
    assert {t.ident for t in threading.enumerate()} == before


# --- a binary stream, as from the object store ------------------------------------------------


class _OneWayStream(io.RawIOBase):
    """A stream that can only be read forwards, in the sizes it chooses (like a download)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        piece = self._data.read(min(len(buffer), 1000))
        buffer[: len(piece)] = piece
        return len(piece)


class _Stored:
    def __init__(self, data: bytes) -> None:
        self._bytes = data
        self.name = "stored.csv"
        self.size_bytes = len(data)

    def open_binary(self) -> IO[bytes]:
        return _OneWayStream(self._bytes)  # type: ignore[return-value]


def test_a_stored_stream_reads_as_the_file(tmp_path: Path) -> None:
    path = write_cases(tmp_path / "cases.csv", 700, newline="\r\n")
    from_file = EncodedCsv(path, chunk_rows=100)
    from_store = EncodedCsv(_Stored(path.read_bytes()), chunk_rows=100)
    file_counts = aggregate(from_file, SPLIT)
    store_counts = aggregate(from_store, SPLIT)
    assert not from_store.fell_back
    for a, b in zip(file_counts, store_counts, strict=True):
        assert_same_counts(a, b)
    assert from_store.sha256 == from_file.sha256
    assert from_store.report == from_file.report
