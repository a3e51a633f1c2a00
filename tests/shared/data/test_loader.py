"""The loader against the variants real CDC case files come in, and against files it must refuse.

Every file here is written by hand into ``tmp_path``: the tests depend on no dataset.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.data.loader import (
    MISSING_CODE,
    EncodedCsv,
    LoadReport,
    decode_features,
    load_cases,
    parse_dates,
    read_header,
    validate_dataset,
)
from shared.data.schema import (
    ALL_COLUMNS,
    DATE_COLUMNS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    REQUIRED_COLUMNS,
    VOCABULARY,
)
from shared.errors import DataError

# A loader that warns (pandas' ParserWarning about dropped fields, a FutureWarning) has a bug.
pytestmark = pytest.mark.filterwarnings("error")

Record = dict[str, str]

#: Dates as ISO strings; files write them in whichever format a test asks for.
_DATES = ("2020-11-10", "2020-11-09", "2020-03-01", "2020-12-31", "2020-01-02", "2020-07-04")
_DATE_FORMATS = {"ymd_slash": "%Y/%m/%d", "ymd_dash": "%Y-%m-%d", "dmy_slash": "%d/%m/%Y"}


def _record(i: int, **values: str) -> Record:
    """A valid CDC row; ``values`` override some cells."""
    date = _DATES[i % len(_DATES)]
    record = {
        "cdc_case_earliest_dt": date,
        "cdc_report_dt": date,
        "pos_spec_dt": date,
        "onset_dt": date,
        "current_status": ("Laboratory-confirmed case", "Probable Case")[i % 2],
        "sex": ("Female", "Male", "Unknown")[i % 3],
        "age_group": VOCABULARY["age_group"][i % 9],
        "race_ethnicity_combined": VOCABULARY["race_ethnicity_combined"][i % 7],
        "hosp_yn": ("Yes", "No", "Unknown", "Missing")[i % 4],
        "icu_yn": ("No", "Yes", "Missing")[i % 3],
        "death_yn": ("No", "Yes", "No", "Missing", "Unknown")[i % 5],
        "medcond_yn": ("Yes", "No")[i % 2],
    }
    record.update(values)
    return record


#: Six rows with both labels (Yes on rows 1; No on rows 0, 2, 5; unlabelled rows 3, 4).
BASE = [_record(i) for i in range(6)]


def render(
    records: Sequence[Record],
    *,
    columns: Sequence[str] = ALL_COLUMNS,
    names: dict[str, str] | None = None,
    date_format: str | None = "%Y/%m/%d",
    bom: bool = False,
    newline: str = "\n",
) -> bytes:
    """A CSV of ``records`` as a real release might write it: ``columns`` in that order, headers
    renamed by ``names``, ISO dates rewritten in ``date_format`` (None: cells as given)."""
    names = names or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow([names.get(c, c) for c in columns])
    for record in records:
        cells = []
        for col in columns:
            value = record[col]
            if col in DATE_COLUMNS and value and date_format:
                value = pd.Timestamp(value).strftime(date_format)
            cells.append(value)
        writer.writerow(cells)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")


def write(tmp_path: Path, content: bytes | str, name: str = "cases.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def stream(path: Path, chunk_rows: int) -> tuple[np.ndarray, np.ndarray, EncodedCsv]:
    """Every chunk of ``path``, concatenated, after checking the chunks' bookkeeping."""
    encoded = EncodedCsv(path, chunk_rows=chunk_rows)
    chunks = list(encoded)
    expected_first = 0
    previous_bytes = 0
    for chunk in chunks:
        assert chunk.first_row == expected_first
        assert 0 < len(chunk.labels) <= chunk_rows
        assert chunk.features.shape == (len(chunk.labels), len(FEATURE_COLUMNS))
        assert chunk.bytes_read >= previous_bytes
        expected_first += len(chunk.labels)
        previous_bytes = chunk.bytes_read
    size = path.stat().st_size
    assert encoded.total_bytes == size
    if chunks:
        assert chunks[-1].bytes_read == size
    assert encoded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    features = np.concatenate([c.features for c in chunks]) if chunks else np.empty((0, 7))
    labels = np.concatenate([c.labels for c in chunks]) if chunks else np.empty(0)
    return features, labels, encoded


def expected_labels(records: Sequence[Record]) -> list[int]:
    return [{"Yes": 1, "No": 0}.get(r[LABEL_COLUMN].strip(), -1) for r in records]


# --- variants real files come in ----------------------------------------------------------

_NO_EARLIEST = tuple(c for c in ALL_COLUMNS if c != "cdc_case_earliest_dt")
_SHUFFLED = (
    "death_yn",
    "sex",
    "onset_dt",
    "race_ethnicity_combined",
    "medcond_yn",
    "cdc_report_dt",
    "icu_yn",
    "current_status",
    "cdc_case_earliest_dt",
    "age_group",
    "pos_spec_dt",
    "hosp_yn",
)

VARIANTS: dict[str, dict[str, Any]] = {
    "canonical": {},
    "race_header_alias": {"names": {"race_ethnicity_combined": "Race and ethnicity (combined)"}},
    "stray_spaces_in_headers": {
        "names": {
            "cdc_case_earliest_dt": "cdc_case_earliest_dt ",
            "sex": " sex",
            "icu_yn": "icu_yn  ",
        }
    },
    "upper_case_headers": {"names": {c: c.upper() for c in ALL_COLUMNS}},
    "no_cdc_case_earliest_dt": {"columns": _NO_EARLIEST},
    "no_date_columns": {"columns": (*FEATURE_COLUMNS, LABEL_COLUMN)},
    "dates_ymd_slash": {"date_format": "%Y/%m/%d"},
    "dates_ymd_dash": {"date_format": "%Y-%m-%d"},
    "dates_dmy_slash": {"date_format": "%d/%m/%Y"},
    "utf8_bom": {"bom": True},
    "crlf": {"newline": "\r\n"},
    "columns_shuffled": {"columns": _SHUFFLED},
    "like_the_real_extract": {
        "columns": _NO_EARLIEST,
        "names": {"race_ethnicity_combined": "Race and ethnicity (combined)"},
        "date_format": "%d/%m/%Y",
        "newline": "\r\n",
    },
    "everything_at_once": {
        "columns": tuple(reversed(_NO_EARLIEST)),
        "names": {"race_ethnicity_combined": " Race and ethnicity (combined) ", "sex": "Sex "},
        "date_format": "%Y-%m-%d",
        "bom": True,
        "newline": "\r\n",
    },
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_reads_the_same(tmp_path: Path, variant: str) -> None:
    options = VARIANTS[variant]
    path = write(tmp_path, render(BASE, **options))
    columns = options.get("columns", ALL_COLUMNS)

    summary = validate_dataset(path)
    assert (summary.rows, summary.labelled, summary.positives, summary.negatives) == (6, 4, 1, 3)
    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.size_bytes == path.stat().st_size
    assert summary.invalid_values == dict.fromkeys(FEATURE_COLUMNS, 0)

    features, labels, _ = stream(path, chunk_rows=4)
    assert labels.tolist() == expected_labels(BASE)
    decoded = decode_features(features)
    for col in FEATURE_COLUMNS:
        assert decoded[col].tolist() == [r[col] for r in BASE]

    frame, report = load_cases(path)
    assert list(frame.columns) == [*DATE_COLUMNS, *FEATURE_COLUMNS, LABEL_COLUMN]
    assert report.rows_read == 6 and report.labelled == 4 and report.positives == 1
    for col in FEATURE_COLUMNS:
        assert frame[col].tolist() == [r[col] for r in BASE]
    assert frame[LABEL_COLUMN].tolist() == [r[LABEL_COLUMN] for r in BASE]
    for col in DATE_COLUMNS:
        assert frame[col].dtype == "datetime64[ns]"
        if col in columns:
            assert frame[col].tolist() == [pd.Timestamp(r[col]) for r in BASE]
        else:
            assert frame[col].isna().all()


def test_the_first_header_of_a_column_wins_and_other_columns_are_ignored(tmp_path: Path) -> None:
    records = [{**r, "dup": "Hispanic/Latino", "res_state": "CA"} for r in BASE]
    columns = (*ALL_COLUMNS, "dup", "res_state")
    names = {"dup": "Race and ethnicity (combined)"}
    path = write(tmp_path, render(records, columns=columns, names=names))
    frame, _ = load_cases(path)
    assert frame["race_ethnicity_combined"].tolist() == [r["race_ethnicity_combined"] for r in BASE]
    assert list(frame.columns) == [*DATE_COLUMNS, *FEATURE_COLUMNS, LABEL_COLUMN]


# --- empty markers, invalid values, labels ------------------------------------------------


def test_empty_markers_are_missing_and_not_counted_as_invalid(tmp_path: Path) -> None:
    markers = ["", "NA", "N/A", "NaN", "NULL", "null", "None", "#N/A", "  ", "na", "n/a"]
    records = [_record(i, sex=m, icu_yn=m, age_group=m) for i, m in enumerate(markers)]
    records[0]["death_yn"], records[1]["death_yn"] = "Yes", "No"
    path = write(tmp_path, render(records))

    features, _, encoded = stream(path, chunk_rows=3)
    assert encoded.report.invalid_values == dict.fromkeys(FEATURE_COLUMNS, 0)
    for col in ("sex", "icu_yn", "age_group"):
        j = FEATURE_COLUMNS.index(col)
        assert (features[:, j] == MISSING_CODE[col]).all()

    frame, report = load_cases(path)
    assert report.invalid_values == dict.fromkeys(FEATURE_COLUMNS, 0)
    assert set(frame["sex"]) == set(frame["icu_yn"]) == set(frame["age_group"]) == {"Missing"}


def test_invalid_values_are_counted_per_column_and_read_as_missing(tmp_path: Path) -> None:
    records = [
        _record(0, sex="male", hosp_yn="Maybe", death_yn="Yes"),
        _record(1, sex="M", hosp_yn="Maybe", death_yn="No"),
        _record(2, age_group="10-19 Years", icu_yn="NA"),  # NA is empty, not invalid
        _record(3, race_ethnicity_combined="Martian", current_status="", medcond_yn="Y"),
        _record(4, sex=" Male ", hosp_yn=" Yes"),  # surrounding spaces are not invalid
        _record(5),
        _record(6, sex="male"),
    ]
    path = write(tmp_path, render(records))
    expected = dict.fromkeys(FEATURE_COLUMNS, 0) | {
        "sex": 3,
        "hosp_yn": 2,
        "age_group": 1,
        "race_ethnicity_combined": 1,
        "medcond_yn": 1,
    }

    for chunk_rows in (1, 3, 1000):
        assert validate_dataset(path, chunk_rows).invalid_values == expected

    frame, report = load_cases(path)
    assert report.invalid_values == expected
    sexes = ["Missing", "Missing", "Unknown", "Female", "Male", "Unknown", "Missing"]
    assert frame["sex"].tolist() == sexes
    assert frame["hosp_yn"].tolist()[:2] == ["Missing", "Missing"]
    assert frame["hosp_yn"].tolist()[4] == "Yes"
    assert frame["age_group"].tolist()[2] == "Missing"
    assert frame["race_ethnicity_combined"].tolist()[3] == "Missing"
    assert frame["medcond_yn"].tolist()[3] == "Missing"


def test_labels_yes_no_and_everything_else_unlabelled(tmp_path: Path) -> None:
    values = ["Yes", "No", "Missing", "Unknown", "", "NA", "maybe", " Yes ", "No ", "yes", "NO"]
    records = [_record(i, death_yn=v) for i, v in enumerate(values)]
    path = write(tmp_path, render(records))
    want = [1, 0, -1, -1, -1, -1, -1, 1, 0, -1, -1]
    for chunk_rows in (1, 3, 1000):
        _, labels, encoded = stream(path, chunk_rows)
        assert labels.tolist() == want
        report = encoded.report
        assert (report.rows_read, report.labelled, report.positives, report.negatives) == (
            11,
            4,
            2,
            2,
        )
        assert report.unlabelled == 7
    frame, report = load_cases(path)
    assert report.labelled == 4 and report.positives == 2
    assert frame[LABEL_COLUMN].tolist() == [v.strip() for v in values]


def test_a_short_row_reads_its_absent_cells_as_missing(tmp_path: Path) -> None:
    text = render(BASE).decode() + "2020/11/10,2020/11/10,,,Probable Case,Male\n"
    path = write(tmp_path, text)
    for chunk_rows in (1, 1000):
        features, labels, encoded = stream(path, chunk_rows)
        assert labels[-1] == -1
        assert decode_features(features[-1:]).iloc[0].tolist() == [
            "Probable Case",
            "Male",
            "Missing",
            "Missing",
            "Missing",
            "Missing",
            "Missing",
        ]
        assert encoded.report.invalid_values == dict.fromkeys(FEATURE_COLUMNS, 0)


# --- chunking and hashing -----------------------------------------------------------------


def _random_records(n: int, seed: int = 3) -> list[Record]:
    rng = random.Random(seed)
    strays = ["", "NA", "bogus", " Yes", "male"]
    records = []
    for i in range(n):
        record = _record(i)
        for col in FEATURE_COLUMNS:
            pool = [*VOCABULARY[col], *strays]
            record[col] = rng.choice(pool)
        record[LABEL_COLUMN] = rng.choice(["Yes", "No", "No", "Missing", "Unknown", "", "x"])
        records.append(record)
    return records


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_chunk_size_changes_nothing(tmp_path: Path, newline: str) -> None:
    path = write(tmp_path, render(_random_records(40), bom=True, newline=newline))
    results = {rows: stream(path, rows) for rows in (1, 3, 1000)}
    features, labels, reference = results[1000]
    assert len(labels) == 40
    assert sum(reference.report.invalid_values.values()) > 0
    for rows in (1, 3):
        other_features, other_labels, other = results[rows]
        np.testing.assert_array_equal(other_features, features)
        np.testing.assert_array_equal(other_labels, labels)
        assert other.report == reference.report
        assert other.sha256 == reference.sha256
        assert len(list(EncodedCsv(path, rows))) == -(-40 // rows)
    summaries = {rows: validate_dataset(path, rows) for rows in (1, 3, 1000)}
    assert summaries[1] == summaries[3] == summaries[1000]
    assert summaries[1].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    frame, report = load_cases(path)
    assert report == reference.report
    assert frame[list(FEATURE_COLUMNS)].equals(decode_features(features))


def test_sha256_covers_the_whole_file_even_past_the_last_row(tmp_path: Path) -> None:
    # Trailing blank lines hold no row but are part of the file and of its hash.
    content = render(BASE) + b"\n\n\n"
    path = write(tmp_path, content)
    assert validate_dataset(path).sha256 == hashlib.sha256(content).hexdigest()
    _, _, encoded = stream(path, 2)
    assert encoded.sha256 == hashlib.sha256(content).hexdigest()


def test_a_character_cut_by_the_sniff_window_is_fine(tmp_path: Path) -> None:
    # A two-byte character straddling byte 65,536, where read_header stops reading.
    columns = (*ALL_COLUMNS, "note")
    records = [{**r, "note": ""} for r in BASE]
    before_note = len(render(records[:1], columns=columns)) - 1  # up to the first row's note
    records[0]["note"] = "x" * (64 * 1024 - 1 - before_note) + "é" * 10
    content = render(records, columns=columns)
    assert content[64 * 1024 - 1 : 64 * 1024 + 1].decode() == "é"
    path = write(tmp_path, content)
    assert validate_dataset(path).rows == 6
    assert len(load_cases(path)[0]) == 6


# --- dates --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(_DATE_FORMATS.values()), ids=list(_DATE_FORMATS))
def test_parse_dates_reads_each_format(fmt: str) -> None:
    dates = [pd.Timestamp(d) for d in _DATES]
    parsed = parse_dates(pd.Series([d.strftime(fmt) for d in dates]))
    assert parsed.dtype == "datetime64[ns]"
    assert parsed.tolist() == dates


def test_parse_dates_mixes_formats_and_turns_bad_or_empty_dates_into_nat() -> None:
    raw = [
        "2020/11/10",
        "2020-11-10",
        "10/11/2020",
        " 10/11/2020 ",
        "",
        "   ",
        "NA",
        None,
        "garbage",
        "31/02/2020",  # no such day
        "2020/13/01",  # no such month
        "11/25/2020",  # US order is not one of the formats
        "9999-12-31",  # beyond what datetime64[ns] holds
        "0001/01/01",
    ]
    parsed = parse_dates(pd.Series(raw, dtype=object))
    day = pd.Timestamp("2020-11-10")
    assert parsed.tolist()[:4] == [day] * 4
    assert parsed.iloc[4:].isna().all()
    categorical = parse_dates(pd.Series(raw, dtype="category"))
    assert categorical.equals(parsed)
    assert parse_dates(pd.Series([], dtype=object)).empty


def test_bad_dates_never_fail_a_load(tmp_path: Path) -> None:
    records = [
        _record(0, cdc_report_dt="not a date", onset_dt="9999/12/31", death_yn="Yes"),
        _record(1, cdc_report_dt="", onset_dt="NA", pos_spec_dt="2020/02/30", death_yn="No"),
    ]
    path = write(tmp_path, render(records, date_format=None))
    validate_dataset(path)
    frame, _ = load_cases(path)
    assert frame["cdc_report_dt"].isna().all()
    assert frame["onset_dt"].isna().all()
    assert frame["pos_spec_dt"].tolist()[1] is pd.NaT
    assert frame["cdc_case_earliest_dt"].tolist() == [
        pd.Timestamp(_DATES[0]),
        pd.Timestamp(_DATES[1]),
    ]


# --- files the loader must refuse ---------------------------------------------------------

_VALID = render(BASE)
_HEADER_LINE = _VALID.split(b"\n", 1)[0] + b"\n"


def _without(column: str) -> bytes:
    return render(BASE, columns=tuple(c for c in ALL_COLUMNS if c != column))


def _ragged_at(index: int) -> bytes:
    lines = _VALID.decode().splitlines()
    lines[index] += ",extra"
    return ("\n".join(lines) + "\n").encode()


_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
_JSON = json.dumps([{c: BASE[0][c] for c in ALL_COLUMNS}], indent=2).encode()
_LATIN1 = render([_record(0, sex="Féminin")]).decode().encode("latin-1")
_BAD_FILES: dict[str, tuple[bytes, str]] = {
    "zero_bytes": (b"", "empty"),
    "only_whitespace": (b"  \n\r\n\t\n", "empty"),
    "only_a_bom": (b"\xef\xbb\xbf\n", "empty"),
    "png_image": (_PNG, "PNG"),
    "gzip_of_a_valid_csv": (gzip.compress(_VALID), "gzip"),
    "zip_archive": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "ZIP"),
    "binary_bytes": (bytes(range(256)) * 4, "binary"),
    "json": (_JSON, "JSON"),
    "json_object": (b'{"rows": []}', "JSON"),
    "html_page": (b"<!DOCTYPE html>\n<html><body>Not found</body></html>\n", "HTML"),
    "utf16_csv": (_VALID.decode().encode("utf-16"), "UTF-16"),
    "latin1_text": (_LATIN1, "not UTF-8"),
    "header_only": (_HEADER_LINE, "no data rows"),
    "header_then_blank_lines": (_HEADER_LINE + b"\n\n\r\n", "no data rows"),
    "missing_sex": (_without("sex"), "sex"),
    "missing_death_yn": (_without("death_yn"), "death_yn"),
    "semicolon_separated": (_VALID.replace(b",", b";"), "';'"),
    "ragged_first_row": (_ragged_at(1), "line 2 has 13 fields but the header has 12"),
    "ragged_later_row": (_ragged_at(5), "line 6 has 13 fields but the header has 12"),
    "ragged_last_row": (_ragged_at(6), "line 7 has 13 fields"),
    "unclosed_quote": (_VALID + b'2020/11/10,"2020/11/10,,\n', "not a well-formed CSV"),
}


@pytest.mark.parametrize("chunk_rows", [1, 1000])
@pytest.mark.parametrize("case", list(_BAD_FILES))
def test_an_unusable_file_fails_with_one_data_error(
    tmp_path: Path, case: str, chunk_rows: int
) -> None:
    content, fragment = _BAD_FILES[case]
    path = write(tmp_path, content)
    with pytest.raises(DataError, match=re.escape(fragment)) as streamed:
        validate_dataset(path, chunk_rows)
    assert streamed.value.code == "invalid_dataset" and streamed.value.status_code == 422
    with pytest.raises(DataError, match=re.escape(fragment)):
        load_cases(path)


@pytest.mark.parametrize("missing", REQUIRED_COLUMNS)
def test_a_missing_required_column_is_named_in_message_and_details(
    tmp_path: Path, missing: str
) -> None:
    path = write(tmp_path, _without(missing))
    with pytest.raises(DataError) as caught:
        read_header(path)
    assert f"missing: {missing} " in caught.value.message
    assert caught.value.details == {"missing_columns": [missing]}


def test_several_missing_columns_are_all_named(tmp_path: Path) -> None:
    columns = tuple(c for c in ALL_COLUMNS if c not in ("sex", "hosp_yn"))
    path = write(tmp_path, render(BASE, columns=columns))
    with pytest.raises(DataError, match="required columns missing: sex, hosp_yn") as caught:
        validate_dataset(path)
    assert caught.value.details == {"missing_columns": ["sex", "hosp_yn"]}


def test_a_ragged_row_is_reported_whatever_the_chunk(tmp_path: Path) -> None:
    records = _random_records(30)
    lines = render(records).decode().splitlines()
    lines[20] += ",stray"
    path = write(tmp_path, "\n".join(lines) + "\n")
    for chunk_rows in (1, 3, 1000):
        with pytest.raises(DataError, match="line 21 has 13 fields") as caught:
            list(EncodedCsv(path, chunk_rows))
        assert caught.value.details == {"line": 21, "fields": 13, "expected_fields": 12}


def test_a_bad_byte_past_the_sniff_window_is_a_data_error(tmp_path: Path) -> None:
    body = render(_random_records(800))
    assert len(body) > 64 * 1024
    latin1_row = render([_record(0, sex="Féminin")]).decode().split("\n", 1)[1]
    path = write(tmp_path, body + latin1_row.encode("latin-1"))
    for chunk_rows in (1, 1000):
        with pytest.raises(DataError, match="not UTF-8"):
            validate_dataset(path, chunk_rows)
    with pytest.raises(DataError, match="not UTF-8"):
        load_cases(path)


def test_a_path_that_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        validate_dataset(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="folder"):
        load_cases(tmp_path)


LabelCase = tuple[Callable[[int], str], str]
_LABEL_CASES: dict[str, LabelCase] = {
    "no_labelled_row": (lambda i: ("Missing", "Unknown", "", "NA")[i % 4], "no row has a death_yn"),
    "only_yes": (lambda i: ("Yes", "Missing")[i % 2], "every labelled row has death_yn = Yes"),
    "only_no": (lambda i: ("No", "Unknown", "")[i % 3], "every labelled row has death_yn = No"),
}


@pytest.mark.parametrize("case", list(_LABEL_CASES))
def test_a_file_without_both_labels_is_not_trainable(tmp_path: Path, case: str) -> None:
    label_of, fragment = _LABEL_CASES[case]
    records = [_record(i, death_yn=label_of(i)) for i in range(9)]
    path = write(tmp_path, render(records))
    for chunk_rows in (1, 1000):
        with pytest.raises(DataError, match=fragment):
            validate_dataset(path, chunk_rows)
    # load_cases reads such a file (it is fine to look at); its report says it is unusable.
    frame, report = load_cases(path)
    assert len(frame) == 9
    with pytest.raises(DataError, match=fragment):
        report.check_labels()


def test_check_labels_on_an_empty_report() -> None:
    with pytest.raises(DataError, match="no data rows"):
        LoadReport().check_labels()
    LoadReport(rows_read=3, labelled=2, positives=1, negatives=1).check_labels()


# --- the streaming path stays cheap -------------------------------------------------------


def test_the_stream_parses_no_dates_and_looks_at_each_distinct_value_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.data.loader

    def no_dates(*args: object, **kwargs: object) -> None:
        raise AssertionError("the streaming path parsed dates")

    seen: list[str] = []
    real_is_empty = shared.data.loader.is_empty_marker

    def counting_is_empty(value: str) -> bool:
        seen.append(value)
        return real_is_empty(value)

    monkeypatch.setattr(pd, "to_datetime", no_dates)
    monkeypatch.setattr(shared.data.loader, "parse_dates", no_dates)
    monkeypatch.setattr(shared.data.loader, "is_empty_marker", counting_is_empty)
    strays = ("bogus", "NA", "")
    records = [_record(i, sex=strays[i % 3], cdc_report_dt="not a date") for i in range(600)]
    path = write(tmp_path, render(records, date_format=None))

    summary = validate_dataset(path, chunk_rows=1000)
    assert summary.rows == 600
    assert summary.invalid_values["sex"] == 200
    assert sorted(seen) == sorted(strays)  # once per distinct value, not once per row
