"""Bad files, a corpus: the kinds of file people send by mistake, and what the loader says.

Every file is generated here, small and deterministic, from one valid synthetic file; nothing
is read from a data folder and no binary fixture is committed. ``CORPUS`` is the table the
API (``tests/api/routes/test_dataset_corpus.py``) and CLI (``tests/cli/test_train_bad_files.py``)
tests run end to end as well: a refused kind is a ``DataError`` whose message names the problem
(``expect`` is a fragment of it); an accepted kind (``expect`` is None) reads like the valid file
it was made from, with the facts :func:`facts_of` counts independently of the loader.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shared.data.header import MAX_COLUMNS
from shared.data.loader import load_cases, validate_dataset
from shared.data.schema import (
    ALL_COLUMNS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    VOCABULARY,
    is_empty_marker,
)
from shared.data.synthetic import write_synthetic_csv
from shared.errors import DataError

MiB = 1024 * 1024
BASE_ROWS = 3_000
BASE_SEED = 11
#: A message is one line a person reads, never a dump of the file.
MAX_MESSAGE_CHARS = 500
#: What a spreadsheet would evaluate, by the column it is put in (every seventh row or so).
FORMULAS = {
    "sex": "=1+1",
    "age_group": "@SUM(A1)",
    "hosp_yn": "+1",
    "icu_yn": "-2+3",
    "race_ethnicity_combined": '=HYPERLINK("http://example.invalid","click")',
    "medcond_yn": "=cmd|' /C calc'!A0",
    LABEL_COLUMN: "=1+1",
}
ZIP_BOMB_BYTES = 64 * MiB
_DATE = (2020, 1, 22, 0, 0, 0)


def base_csv(folder: Path) -> bytes:
    """The valid file every kind is made from: synthetic CDC rows, ``\\n`` line ends, no BOM."""
    path = folder / "base.csv"
    if not path.exists():
        write_synthetic_csv(path, BASE_ROWS, seed=BASE_SEED)
    return path.read_bytes()


def _records(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def _render(records: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    return out.getvalue().encode("utf-8")


def facts_of(content: bytes) -> dict[str, Any]:
    """Rows, labelled rows and out-of-vocabulary cells per feature, counted with the csv module
    and the schema alone: what every entry point must report for an accepted file."""
    header, *rows = [r for r in _records(content) if r]
    at = {name: i for i, name in enumerate(header)}

    def cell(row: list[str], column: str) -> str:
        i = at[column]
        return row[i].strip() if i < len(row) else ""

    return {
        "rows": len(rows),
        "labelled": sum(cell(r, LABEL_COLUMN) in ("Yes", "No") for r in rows),
        "invalid_values": {
            col: sum(
                cell(r, col) not in VOCABULARY[col] and not is_empty_marker(cell(r, col))
                for r in rows
            )
            for col in FEATURE_COLUMNS
        },
    }


# --- the builders -------------------------------------------------------------------------


def _png(_: bytes) -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _zip_of(base: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("cases.csv", date_time=_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, base)
    return buffer.getvalue()


def zip_bomb(_: bytes = b"") -> bytes:
    """About 64 KiB of zip that would expand to 64 MiB of NULs (deflate's ~1000:1 at most),
    written chunk by chunk so that the test never holds the expanded bytes either."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("cases.csv", date_time=_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            block = bytes(MiB)
            for _block in range(ZIP_BOMB_BYTES // MiB):
                member.write(block)
    return buffer.getvalue()


def _one_10mb_line(base: bytes) -> bytes:
    """The real header, then 10 MiB more of one column name and no line break at all."""
    header = base.split(b"\n", 1)[0]
    return header + b"," + b"x" * (10 * MiB - len(header) - 1)


def _columns_100k(base: bytes) -> bytes:
    """The 12 real columns and 99,988 more, then two rows as wide (empty extra cells)."""
    header, first, second = base.split(b"\n", 3)[:3]
    extra = 100_000 - len(ALL_COLUMNS)
    names = b"".join(b",c%d" % i for i in range(extra))
    pad = b"," * extra
    return header + names + b"\n" + first + pad + b"\n" + second + pad + b"\n"


def _ragged(base: bytes) -> bytes:
    """Row 1,500 (far past the sniffed 64 KiB) has one field too many."""
    lines = base.split(b"\n")
    lines[1_500] += b",stray"
    return b"\n".join(lines)


def _latin1(base: bytes) -> bytes:
    text = base.decode().replace("Female", "Féminin").replace("Unknown", "Inconnu à préciser")
    return text.encode("latin-1")


def _unclosed_quote(base: bytes) -> bytes:
    """A quoted value with a line break in it that is never closed (on the last row, so that
    no later quote closes it)."""
    return base + b'2020/01/22,,,,"Laboratory-confirmed\ncase,Male,80+ Years\n'


def _header_only(base: bytes) -> bytes:
    return base.split(b"\n", 1)[0] + b"\n"


def _html(_: bytes) -> bytes:
    return b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>\n"


def _json(base: bytes) -> bytes:
    header, *rows = _records(base)[:4]
    return json.dumps([dict(zip(header, row, strict=True)) for row in rows], indent=2).encode()


def _edit_cells(base: bytes, edit: Callable[[int, dict[str, str]], None]) -> bytes:
    """``base`` with ``edit(i, row)`` applied to each data row (a dict by column name)."""
    header, *rows = _records(base)
    out = [header]
    for i, row in enumerate(rows):
        record = dict(zip(header, row, strict=True))
        edit(i, record)
        out.append([record[name] for name in header])
    return _render(out)


def _formulas(base: bytes) -> bytes:
    """Spreadsheet formulas in every feature column, and in ``death_yn`` of some rows that
    were labelled No (those rows become unlabelled)."""
    columns = list(FORMULAS)

    def edit(i: int, record: dict[str, str]) -> None:
        column = columns[i % 10] if i % 10 < len(columns) else None
        if column == LABEL_COLUMN and record[LABEL_COLUMN] != "No":
            return
        if column is not None:
            record[column] = FORMULAS[column]

    return _edit_cells(base, edit)


def _quoted_newlines(base: bytes) -> bytes:
    """Well-formed quoted values with line breaks in them: one record each, not two rows."""

    def edit(i: int, record: dict[str, str]) -> None:
        if i % 9 == 0:
            record["sex"] = "Ma\nle"
        if i % 9 == 4:
            record["race_ethnicity_combined"] = "White,\r\nNon-Hispanic"

    return _edit_cells(base, edit)


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[bytes], bytes]
    #: A fragment of the loader's message; None for a kind that is accepted.
    expect: str | None
    #: Refused from the first 64 KiB alone, before pandas parses a byte.
    early: bool = False

    @property
    def accepted(self) -> bool:
        return self.expect is None


CORPUS: tuple[Kind, ...] = (
    Kind("empty", lambda _: b"", "the file is empty (0 bytes)", early=True),
    Kind(
        "random_bytes",
        lambda _: random.Random(20200122).randbytes(4096),
        "not a CSV text file (it contains binary data)",
        early=True,
    ),
    Kind("png_image", _png, "it is a PNG image", early=True),
    Kind("gzip_of_a_csv", lambda b: gzip.compress(b, mtime=0), "it is a gzip archive", early=True),
    Kind("zip_of_a_csv", _zip_of, "it is a ZIP archive", early=True),
    Kind("zip_bomb_named_csv", zip_bomb, "it is a ZIP archive", early=True),
    Kind(
        "semicolon_separated",
        lambda b: b.replace(b",", b";"),
        "seems to separate values with ';', not commas",
        early=True,
    ),
    Kind(
        "tab_separated",
        lambda b: b.replace(b",", b"\t"),
        "seems to separate values with '\\t', not commas",
        early=True,
    ),
    Kind("utf16_with_bom", lambda b: b.decode().encode("utf-16"), "UTF-16 text", early=True),
    Kind(
        "utf16_without_bom",
        lambda b: b.decode().encode("utf-16-le"),
        "UTF-16 text (without a byte-order mark)",
        early=True,
    ),
    Kind("latin1_with_accents", _latin1, "looks like Latin-1 or Windows-1252", early=True),
    Kind(
        "one_10_mb_line",
        _one_10mb_line,
        "the first line (the header) does not end within 64 KiB (65,536 bytes)",
        early=True,
    ),
    Kind(
        "columns_100k",
        _columns_100k,
        f"more than the limit of {MAX_COLUMNS} columns",
        early=True,
    ),
    Kind("json", _json, "the file is JSON, not CSV", early=True),
    Kind("html", _html, "the file is HTML or XML, not CSV", early=True),
    Kind("header_only", _header_only, "the file has a header but no data rows"),
    Kind("ragged_rows", _ragged, "line 1501 has 13 fields but the header has 12"),
    Kind("quoted_newline_never_closed", _unclosed_quote, "is never closed"),
    # accepted
    Kind("utf8_bom", lambda b: b"\xef\xbb\xbf" + b, None),
    Kind("crlf", lambda b: b.replace(b"\n", b"\r\n"), None),
    Kind("spreadsheet_formulas", _formulas, None),
    Kind("quoted_newlines", _quoted_newlines, None),
)
REFUSED = tuple(k for k in CORPUS if not k.accepted)
ACCEPTED = tuple(k for k in CORPUS if k.accepted)


def loader_message(path: Path) -> str:
    """What the loader says about a refused file (the API and CLI must say the same)."""
    with pytest.raises(DataError) as caught:
        validate_dataset(path)
    return caught.value.message


# --- the test -----------------------------------------------------------------------------


def _no_parsing(*args: object, **kwargs: object) -> None:
    raise AssertionError("pandas was asked to parse a file refused from its first bytes")


def _no_decompressing(*args: object, **kwargs: object) -> None:
    raise AssertionError("the loader decompressed something")


def test_every_kind_of_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = base_csv(tmp_path)
    base_facts = facts_of(base)
    # Nothing the loader does may decompress: an archive (or a bomb) is refused by its magic.
    monkeypatch.setattr(zlib, "decompress", _no_decompressing)
    monkeypatch.setattr(zlib, "decompressobj", _no_decompressing)
    problems: list[str] = []
    for kind in CORPUS:
        content = kind.build(base)
        path = tmp_path / f"{kind.name}.csv"
        path.write_bytes(content)
        if kind.accepted:
            problems += _check_accepted(kind, path, base_facts)
        else:
            with monkeypatch.context() as patch:
                if kind.early:
                    patch.setattr(pd, "read_csv", _no_parsing)
                problems += _check_refused(kind, path)
        assert path.read_bytes() == content  # read, never changed
    assert not problems, "\n".join(problems)
    print(f"bad files: {len(REFUSED)} kinds refused, {len(ACCEPTED)} accepted (loader)")


def _check_refused(kind: Kind, path: Path) -> list[str]:
    """Every way in refuses the file with one DataError, and the same short message."""
    assert kind.expect is not None
    readers: dict[str, Callable[[], object]] = {
        "validate_dataset": lambda: validate_dataset(path),
        "validate_dataset(chunk_rows=500)": lambda: validate_dataset(path, 500),
        "load_cases": lambda: load_cases(path),
    }
    messages = set()
    for name, read in readers.items():
        try:
            read()
        except DataError as exc:
            if (exc.code, exc.status_code) != ("invalid_dataset", 422):
                return [f"{kind.name}: {name} raised {exc.code} {exc.status_code}"]
            messages.add(exc.message)
        else:
            return [f"{kind.name}: {name} accepted it, expected {kind.expect!r}"]
    if len(messages) != 1:
        return [f"{kind.name}: the ways in disagree: {sorted(messages)}"]
    (message,) = messages
    if kind.expect not in message:
        return [f"{kind.name}: {message!r} does not say {kind.expect!r}"]
    if "\n" in message or len(message) > MAX_MESSAGE_CHARS:
        return [f"{kind.name}: not one short line: {message[:200]!r}... ({len(message)} chars)"]
    return []


def _check_accepted(kind: Kind, path: Path, base_facts: dict[str, Any]) -> list[str]:
    """Read as the csv module reads it, whatever the chunk size, and by load_cases alike."""
    content = path.read_bytes()
    expected = facts_of(content)
    for chunk_rows in (500, 250_000):
        summary = validate_dataset(path, chunk_rows)
        got = {
            "rows": summary.rows,
            "labelled": summary.labelled,
            "invalid_values": summary.invalid_values,
        }
        if got != expected:
            return [f"{kind.name}: read {got}, expected {expected}"]
    frame, report = load_cases(path)
    if len(frame) != expected["rows"] or report.invalid_values != expected["invalid_values"]:
        return [f"{kind.name}: load_cases read {len(frame)} rows, {report.invalid_values}"]
    problems = []
    # The same rows as the file it was made from (a quoted line break splits no row).
    if expected["rows"] != base_facts["rows"]:
        problems.append(f"{kind.name}: {expected['rows']} rows, not {base_facts['rows']}")
    if kind.name in ("utf8_bom", "crlf") and expected != base_facts:
        problems.append(f"{kind.name}: {expected} differs from the file it was made from")
    if kind.name == "spreadsheet_formulas":
        problems += _check_formulas(content, expected, base_facts, frame)
    return problems


def _check_formulas(
    content: bytes, facts: dict[str, Any], base_facts: dict[str, Any], frame: pd.DataFrame
) -> list[str]:
    """Each formula is text: one more out-of-vocabulary value of its column, read as Missing
    (and counted in ``invalid_values``); in ``death_yn`` it leaves its row unlabelled."""
    header, *rows = _records(content)
    problems = []
    for column, formula in FORMULAS.items():
        cells = sum(row[header.index(column)] == formula for row in rows)
        if column == LABEL_COLUMN:
            changed = base_facts["labelled"] - facts["labelled"]
        else:
            changed = facts["invalid_values"][column] - base_facts["invalid_values"][column]
            if (frame[column] == formula).any() or not (frame[column] == "Missing").any():
                problems.append(f"spreadsheet_formulas: {column} did not read it as Missing")
        if cells == 0 or changed != cells:
            problems.append(f"spreadsheet_formulas: {column}: {cells} formulas, {changed} counted")
    return problems


def test_the_zip_bomb_is_small_and_would_expand_a_thousandfold() -> None:
    bomb = zip_bomb()
    (member,) = zipfile.ZipFile(io.BytesIO(bomb)).infolist()
    assert member.filename.endswith(".csv")
    assert len(bomb) < 128 * 1024
    assert member.file_size == ZIP_BOMB_BYTES >= 500 * len(bomb)


def test_the_corpus_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = base_csv(tmp_path / "a"), base_csv(tmp_path / "b")
    assert first == second
    for kind in CORPUS:
        assert kind.build(first) == kind.build(second), kind.name
