"""What a file is, from its first 64 KiB, before pandas reads a byte of it: refused at once
when it is not CSV text (empty, binary, an image, an archive or a zip bomb, UTF-16, Latin-1,
JSON, HTML), when its header line does not end within them, or when it has more than
:data:`MAX_COLUMNS` columns; otherwise its :class:`Header`, matched to the schema."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from shared.data.schema import ALL_COLUMNS, REQUIRED_COLUMNS, canonical_header
from shared.data.source import CsvSource, open_source
from shared.errors import DataError

#: How much of a file is looked at before pandas sees it: the header line must fit in it.
SNIFF_BYTES = 64 * 1024
#: More columns than a CDC file could have: refused before parsing (pandas' cost grows with
#: the columns, whatever the rows).
MAX_COLUMNS = 256
#: A name longer than this is shortened when a message quotes the header.
_SHOWN_NAME_CHARS = 40
#: Signatures of files people send by mistake, so that the error can say what the file is.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "a gzip archive (decompress it first)"),
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (export the sheet as CSV)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/Office document (export the sheet as CSV)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass
class Header:
    """Where each schema column sits in a file's header."""

    source_names: dict[str, str]  # canonical name -> the header as written in the file
    columns: int = 0  # how many columns the header has, used or not

    @property
    def present(self) -> set[str]:
        return set(self.source_names)

    @property
    def canonical_of(self) -> dict[str, str]:
        """The header as written -> the schema's name (pandas keeps file order, not ours)."""
        return {source: canonical for canonical, source in self.source_names.items()}


@dataclass
class _Head:
    """The first :data:`SNIFF_BYTES` of a file, and whether the file goes on past them."""

    data: bytes
    truncated: bool


def _sniff(path: CsvSource) -> _Head:
    try:
        with open_source(path) as fh:
            data = fh.read(SNIFF_BYTES + 1)
            return _Head(data[:SNIFF_BYTES], len(data) > SNIFF_BYTES)
    except FileNotFoundError:
        raise DataError(f"dataset file not found: {path.name}") from None
    except IsADirectoryError:
        raise DataError(f"dataset is a folder, not a file: {path.name}") from None
    except OSError as exc:
        raise DataError(f"dataset file cannot be read: {path.name} ({exc.strerror})") from None


def _utf16_without_bom(head: bytes) -> bool:
    """Whether text looks like UTF-16 written without a byte-order mark: mostly ASCII, so every
    other byte is NUL (the high bytes, at odd offsets for little-endian, even for big)."""
    sample = head[: min(len(head), 1024) // 2 * 2]
    if len(sample) < 4:
        return False
    even, odd = sample[0::2], sample[1::2]
    return any(
        low.count(0) == 0 and high.count(0) >= 0.9 * len(high)
        for low, high in ((even, odd), (odd, even))
    )


def _looks_like_8bit_text(head: bytes) -> bool:
    """Whether bytes that are not UTF-8 read as Windows-1252 (a superset of printable
    Latin-1) text: no control characters but tabs and line breaks."""
    try:
        text = head.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\r\n" for c in text)


def _decode_head(head: _Head) -> str:
    """The sniffed bytes as text, or a :class:`DataError` saying why they are not CSV text.

    Everything here looks at the sniffed bytes only: an archive, an image or a zip bomb is
    refused by its first bytes, never opened or decompressed.
    """
    data = head.data
    if not data:
        raise DataError("the file is empty (0 bytes)")
    if data.startswith(_UTF16_BOMS):
        raise DataError("the file is UTF-16 text, not UTF-8: save it as a UTF-8 CSV")
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            raise DataError(f"the file is not a CSV text file: it is {kind}")
    if b"\x00" in data:
        if _utf16_without_bom(data):
            raise DataError(
                "the file is UTF-16 text (without a byte-order mark), not UTF-8: "
                "save it as a UTF-8 CSV"
            )
        raise DataError("the file is not a CSV text file (it contains binary data)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Only a multi-byte character cut by the sniff boundary is fine.
        cut = head.truncated and exc.end == len(data) and exc.start >= len(data) - 3
        if not (cut and exc.reason == "unexpected end of data"):
            if _looks_like_8bit_text(data):
                raise DataError(
                    f"the file is not UTF-8 text (byte {exc.start}: {exc.reason}): it looks "
                    "like Latin-1 or Windows-1252 text (accented letters?); save it as a "
                    "UTF-8 CSV"
                ) from None
            raise DataError(
                f"the file is not UTF-8 text (byte {exc.start}: {exc.reason}), "
                "so it is not a CSV this loader reads"
            ) from None
        text = data[: exc.start].decode("utf-8-sig")
    stripped = text.lstrip()
    if not stripped:
        raise DataError("the file is empty (it holds only whitespace)")
    if stripped[0] in "{[":
        raise DataError("the file is JSON, not CSV: a CDC case file is a CSV with a header row")
    if stripped[0] == "<":
        raise DataError("the file is HTML or XML, not CSV: a CDC case file is a CSV with a header")
    return text


def ragged_error(line: int, fields: int, expected: int, at_least: bool = False) -> DataError:
    return DataError(
        f"the file is not a well-formed CSV: line {line} has {'at least ' if at_least else ''}"
        f"{fields:,} fields but the header has {expected} (a stray comma, or a value with a "
        "comma that is not quoted?)",
        details={"line": line, "fields": fields, "expected_fields": expected}
        | ({"at_least": True} if at_least else {}),
    )


def _shown(name: str) -> str:
    """A header name as a message quotes it: repr'd (one line) and never very long."""
    if len(name) > _SHOWN_NAME_CHARS:
        return repr(name[:_SHOWN_NAME_CHARS]) + f"... ({len(name):,} characters)"
    return repr(name)


def _check_header_size(names: list[str], complete: bool) -> None:
    """Refuse a header wider than :data:`MAX_COLUMNS`, or one that does not end within the
    sniffed bytes (a file that is one long line, say), before pandas is asked to read it."""
    kib = SNIFF_BYTES // 1024
    if len(names) > MAX_COLUMNS:
        counted = f"{len(names):,}" if complete else f"at least {len(names):,}"
        within = "" if complete else f" in its first {kib} KiB alone"
        raise DataError(
            f"the header has {counted} columns{within}, more than the limit of {MAX_COLUMNS} "
            f"columns: this is not a CDC case file (it has {len(ALL_COLUMNS)})",
            details={"columns": len(names), "max_columns": MAX_COLUMNS, "complete": complete},
        )
    if not complete:
        raise DataError(
            f"the first line (the header) does not end within {kib} KiB ({SNIFF_BYTES:,} "
            f"bytes), the limit for a header line: a CDC case file's header is one short line "
            f"of {len(ALL_COLUMNS)} column names (is the file one long line?)",
            details={"max_header_bytes": SNIFF_BYTES},
        )


def read_header(path: CsvSource) -> Header:
    """Check that ``path`` is a CSV text file with the required columns, and map its header.

    Only the first :data:`SNIFF_BYTES` are read: the header must end within them.
    """
    head = _sniff(path)
    text = _decode_head(head)
    # Blank lines are skipped as pandas skips them; newline="" keeps quoted line breaks whole.
    buffer = io.StringIO(text, newline="")
    records = csv.reader(buffer)

    def ended() -> bool:
        """Whether the record just read ends before the sniffed text does (or the file)."""
        at = buffer.tell()
        return not head.truncated or at < len(text) or text.endswith(("\n", "\r"))

    try:
        names = next(record for record in records if record)
    except (csv.Error, StopIteration):
        raise DataError("the first line is not a CSV header") from None
    _check_header_size(names, complete=ended())
    source_names: dict[str, str] = {}
    for name in names:
        canonical = canonical_header(name)
        source_names.setdefault(canonical, name)
    missing = [col for col in REQUIRED_COLUMNS if col not in source_names]
    if missing:
        shown = ", ".join(_shown(n) for n in names[:12])
        if len(names) > 12:
            shown += f" and {len(names) - 12} more"
        hint = ""
        if len(names) == 1 and (sep := next((c for c in ";\t|" if c in names[0]), None)):
            hint = f"; the file seems to separate values with {sep!r}, not commas"
        raise DataError(
            f"required column{'s' if len(missing) > 1 else ''} missing: {', '.join(missing)} "
            f"(a CDC case file needs {', '.join(REQUIRED_COLUMNS)}; the header has {shown}"
            f"{hint})",
            details={"missing_columns": missing},
        )
    # pandas reads a first row longer than the header as an index column, or drops its extra
    # fields, without a word; later ragged rows it does report. So check the first row here.
    try:
        first = next((record for record in records if record), None)
    except csv.Error:
        first = None  # the sniff may end inside a quoted value; pandas will judge the row
    if first is not None and len(first) > len(names):
        # A row cut by the end of the sniffed bytes has at least the fields seen so far.
        raise ragged_error(records.line_num, len(first), len(names), at_least=not ended())
    return Header(source_names, columns=len(names))
