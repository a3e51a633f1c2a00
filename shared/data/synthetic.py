"""Synthetic case files in the CDC schema, so the project can train, test and load-test without
the real (large, third-party) extract.

The rows follow the published figures in ``shared/data/FACTS.md``: most clinical values are
``Missing`` or ``Unknown``, and deaths are rare, concentrated in the oldest ages, and tied to
hospitalisation, ICU, underlying conditions and, more mildly, sex and race/ethnicity. Each
person's true state is drawn first and then masked the way real reporting masks it, so the
outcome stays learnable from the reported features without being trivial.

Rows come from fixed-size blocks, each with its own random stream keyed by ``(seed, block)``;
that is why the bytes depend on the seed alone, never on how the writer chunks its output.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.data.schema import (
    AGE_GROUPS,
    ALL_COLUMNS,
    LABEL_COLUMN,
    LABEL_VALUES,
    MISSING,
    NO,
    RACE_ETHNICITY,
    UNKNOWN,
    VOCABULARY,
    YES,
)

Codes = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]

#: Rows per random stream. Part of the output's identity: changing it changes every file.
_BLOCK_ROWS: Final = 1 << 16

# --- Dates -----------------------------------------------------------------------------------

_DAYS: Final = np.arange("2020-01-01", "2022-01-01", dtype="datetime64[D]")
#: Lags in days after the earliest date, as in real files: specimens a few days after onset,
#: reports a few days after the specimen.
_SPEC_LAG_WEIGHTS: Final = (0.30, 0.20, 0.15, 0.11, 0.08, 0.06, 0.05, 0.05)
_REPORT_EXTRA_WEIGHTS: Final = (0.25, 0.10, 0.12, 0.12, 0.10, 0.09, 0.07, 0.05, 0.04, 0.03, 0.03)
_MAX_SPEC_LAG: Final = len(_SPEC_LAG_WEIGHTS) - 1
_MAX_REPORT_LAG: Final = _MAX_SPEC_LAG + len(_REPORT_EXTRA_WEIGHTS) - 1
#: The last earliest date that keeps every lagged date inside 2020-2021.
_LAST_EARLIEST: Final = len(_DAYS) - 1 - _MAX_REPORT_LAG
_ONSET_KNOWN: Final = 0.52
#: US epidemic waves as (peak, width in days, height): cases follow them, not a flat calendar.
_WAVES: Final = (
    ("2020-04-10", 20, 0.25),
    ("2020-07-20", 25, 0.50),
    ("2021-01-08", 35, 1.00),
    ("2021-04-15", 20, 0.25),
    ("2021-09-01", 30, 0.55),
    ("2021-12-31", 15, 1.20),
)

# --- Who the cases are -----------------------------------------------------------------------

_STATUS_WEIGHTS: Final = (0.958, 0.040, 0.002)  # confirmed, probable, Missing
_SEX_WEIGHTS: Final = (0.5145, 0.4789, 0.0001, 0.0040, 0.0025)  # F, M, Other, Unknown, Missing
#: True ages of cases: most are working-age adults, few are 80+.
_AGE_WEIGHTS: Final = (0.060, 0.120, 0.180, 0.160, 0.140, 0.140, 0.100, 0.060, 0.040)
_AGE_UNKNOWN: Final = 0.003
_AGE_MISSING: Final = 0.002
#: True race/ethnicity, in RACE_ETHNICITY order, among cases whose race is known.
_RACE_WEIGHTS: Final = (0.012, 0.040, 0.150, 0.280, 0.063, 0.005, 0.450)
_RACE_UNKNOWN: Final = 0.19
_RACE_MISSING: Final = 0.02

# --- Severity: logits of the true outcomes ----------------------------------------------------
# The per-age intercepts were tuned by simulation (4M rows) so that the *reported* rates match
# targets: among rows whose death_yn is Yes or No, deaths by age are 0.03%, 0.04%, 0.12%, 0.45%,
# 1.2%, 3%, 7%, 15%, 27% (ratios to 20-29 of 4x, 10x, 25x, 58x, 125x, 225x: CDC's rate ratios,
# with 80+ capped by its case fatality), about 3.5% overall; among rows whose hosp_yn is Yes or No,
# hospitalisations by age are 2%, 1.5%, 2.5%, 4%, 6%, 9%, 15%, 25%, 35% (CDC's 2x-15x).
# Retune them if any other severity or reporting constant changes.

#: Share of cases with an underlying condition, by age.
_MEDCOND_BY_AGE: Final = (0.05, 0.08, 0.12, 0.18, 0.28, 0.40, 0.55, 0.68, 0.78)
_HOSP_AGE: Final = (-4.59, -4.95, -4.53, -4.15, -3.91, -3.63, -3.24, -2.72, -2.32)
_HOSP_MEDCOND: Final = 1.4
_HOSP_MALE: Final = 0.15
_HOSP_RACE: Final = (0.40, 0.05, 0.35, 0.30, 0.10, 0.30, 0.0)
#: Share of hospitalised cases that reach the ICU, by age.
_ICU_GIVEN_HOSP: Final = (0.12, 0.12, 0.14, 0.17, 0.20, 0.24, 0.27, 0.26, 0.20)
_DEATH_AGE: Final = (-9.33, -8.87, -7.99, -6.89, -6.15, -5.50, -4.94, -4.37, -3.73)
_DEATH_MEDCOND: Final = 0.8
_DEATH_HOSP: Final = 2.5
_DEATH_ICU: Final = 1.3
_DEATH_MALE: Final = 0.35
_DEATH_RACE: Final = (0.45, 0.05, 0.30, 0.30, 0.10, 0.30, 0.0)

# --- Reporting: how true values get masked ----------------------------------------------------
# Real jurisdictions differ: some report the clinical fields, some say Unknown throughout,
# some leave them all blank. A row's reporting style drives all four clinical columns together,
# which gives the correlated Missing/Unknown patterns of real files.
_STYLE_WEIGHTS: Final = (0.43, 0.12, 0.45)  # reported, unknown, sparse
#: P(reported value, Unknown, Missing) per style, for hosp_yn, icu_yn, medcond_yn, death_yn.
_MASKS: Final = {
    "hosp_yn": ((0.97, 0.02, 0.01), (0.04, 0.93, 0.03), (0.06, 0.01, 0.93)),
    "icu_yn": ((0.40, 0.13, 0.47), (0.03, 0.85, 0.12), (0.01, 0.00, 0.99)),
    "medcond_yn": ((0.36, 0.06, 0.58), (0.03, 0.75, 0.22), (0.08, 0.00, 0.92)),
    LABEL_COLUMN: ((0.68, 0.17, 0.15), (0.30, 0.66, 0.04), (0.29, 0.01, 0.70)),
}
#: Deaths and hospital stays leave records, so they are reported more often than their absence.
_DEATH_RECORDED: Final = 0.5
_HOSP_RECORDED: Final = 0.3

# --- Layout of a block of codes ----------------------------------------------------------------
# One int16 column per field; categorical codes index the schema vocabularies.
(
    _DAY,
    _REPORT_LAG,
    _SPEC_LAG,
    _ONSET,
    _STATUS,
    _SEX,
    _AGE,
    _RACE,
    _HOSP,
    _ICU,
    _DEATH,
    _MEDCOND,
) = range(12)
_N_FIELDS: Final = 12
_CATEGORICAL: Final = (
    (_STATUS, "current_status"),
    (_SEX, "sex"),
    (_AGE, "age_group"),
    (_RACE, "race_ethnicity_combined"),
    (_HOSP, "hosp_yn"),
    (_ICU, "icu_yn"),
    (_DEATH, LABEL_COLUMN),
    (_MEDCOND, "medcond_yn"),
)
_YES, _NO, _UNKNOWN, _MISSING = (LABEL_VALUES.index(v) for v in (YES, NO, UNKNOWN, MISSING))


def _cdf(weights: tuple[float, ...] | Floats) -> Floats:
    """Cumulative probabilities for ``searchsorted`` draws; the last one is exactly 1 so a
    draw can never fall off the end."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.asarray(cdf / cdf[-1])


def _wave_weights() -> Floats:
    t = np.arange(_LAST_EARLIEST + 1, dtype=np.float64)
    weights = np.where(t >= 60, 0.05, 0.002)  # almost nothing reported before March 2020
    for peak, width, height in _WAVES:
        centre = float((np.datetime64(peak) - _DAYS[0]).astype(np.int64))
        weights = weights + height * np.exp(-0.5 * ((t - centre) / width) ** 2)
    return np.asarray(weights)


_DAY_CDF: Final = _cdf(_wave_weights())
_SPEC_LAG_CDF: Final = _cdf(_SPEC_LAG_WEIGHTS)
_REPORT_EXTRA_CDF: Final = _cdf(_REPORT_EXTRA_WEIGHTS)
_STATUS_CDF: Final = _cdf(_STATUS_WEIGHTS)
_SEX_CDF: Final = _cdf(_SEX_WEIGHTS)
_AGE_CDF: Final = _cdf(_AGE_WEIGHTS)
_RACE_CDF: Final = _cdf(_RACE_WEIGHTS)
_STYLE_CDF: Final = _cdf(_STYLE_WEIGHTS)
_MASK_CDFS: Final = {col: np.array([_cdf(w) for w in styles]) for col, styles in _MASKS.items()}

_MALE: Final = VOCABULARY["sex"].index("Male")
_AGE_UNKNOWN_CODE: Final = VOCABULARY["age_group"].index(UNKNOWN)
_AGE_MISSING_CODE: Final = VOCABULARY["age_group"].index(MISSING)
_RACE_UNKNOWN_CODE: Final = VOCABULARY["race_ethnicity_combined"].index(UNKNOWN)
_RACE_MISSING_CODE: Final = VOCABULARY["race_ethnicity_combined"].index(MISSING)
assert len(AGE_GROUPS) == len(_AGE_WEIGHTS) and len(RACE_ETHNICITY) == len(_RACE_WEIGHTS)


def _sigmoid(x: Floats) -> Floats:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _report(
    truth: npt.NDArray[np.bool_], style: Codes, u: Floats, column: str
) -> npt.NDArray[np.int16]:
    """Mask true Yes/No values as the row's reporting style would."""
    cdf = _MASK_CDFS[column][style]
    state = (u > cdf[:, 0]).astype(np.int16) + (u > cdf[:, 1])  # 0 reported, 1 Unknown, 2 Missing
    reported = np.where(truth, _YES, _NO)
    return np.where(state == 0, reported, np.where(state == 1, _UNKNOWN, _MISSING)).astype(np.int16)


def _simulate_block(seed: int, block: int) -> Codes:
    """One block of rows as codes; a fixed number of draws per row keeps every stream aligned."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
    n = _BLOCK_ROWS
    u = rng.random((20, n))
    out = np.empty((n, _N_FIELDS), dtype=np.int16)

    day = np.searchsorted(_DAY_CDF, u[0], side="right")
    onset = u[1] < _ONSET_KNOWN
    # Without an onset date the specimen date is the earliest one.
    spec_lag = np.where(onset, np.searchsorted(_SPEC_LAG_CDF, u[2], side="right"), 0)
    report_lag = spec_lag + np.searchsorted(_REPORT_EXTRA_CDF, u[3], side="right")
    out[:, _DAY] = day
    out[:, _REPORT_LAG] = report_lag
    out[:, _SPEC_LAG] = spec_lag
    out[:, _ONSET] = onset
    out[:, _STATUS] = np.searchsorted(_STATUS_CDF, u[4], side="right")
    sex = np.searchsorted(_SEX_CDF, u[5], side="right")
    out[:, _SEX] = sex

    age = np.searchsorted(_AGE_CDF, u[6], side="right")
    out[:, _AGE] = np.where(
        u[7] < _AGE_UNKNOWN,
        _AGE_UNKNOWN_CODE,
        np.where(u[7] < _AGE_UNKNOWN + _AGE_MISSING, _AGE_MISSING_CODE, age),
    )
    race = np.searchsorted(_RACE_CDF, u[8], side="right")
    out[:, _RACE] = np.where(
        u[9] < _RACE_UNKNOWN,
        _RACE_UNKNOWN_CODE,
        np.where(u[9] < _RACE_UNKNOWN + _RACE_MISSING, _RACE_MISSING_CODE, race),
    )

    male = sex == _MALE
    medcond = u[10] < np.asarray(_MEDCOND_BY_AGE)[age]
    hosp_logit = (
        np.asarray(_HOSP_AGE)[age]
        + _HOSP_MEDCOND * medcond
        + _HOSP_MALE * male
        + np.asarray(_HOSP_RACE)[race]
    )
    hosp = u[11] < _sigmoid(hosp_logit)
    icu = hosp & (u[12] < np.asarray(_ICU_GIVEN_HOSP)[age])
    death_logit = (
        np.asarray(_DEATH_AGE)[age]
        + _DEATH_MEDCOND * medcond
        + _DEATH_HOSP * hosp
        + _DEATH_ICU * icu
        + _DEATH_MALE * male
        + np.asarray(_DEATH_RACE)[race]
    )
    death = u[13] < _sigmoid(death_logit)

    style = np.searchsorted(_STYLE_CDF, u[14], side="right").astype(np.int16)
    # One draw for both overrides: a death in hospital tends to bring its stay into the record.
    out[:, _HOSP] = np.where(
        hosp & (u[19] < _HOSP_RECORDED), _YES, _report(hosp, style, u[15], "hosp_yn")
    )
    out[:, _ICU] = _report(icu, style, u[16], "icu_yn")
    out[:, _MEDCOND] = _report(medcond, style, u[17], "medcond_yn")
    out[:, _DEATH] = np.where(
        death & (u[19] < _DEATH_RECORDED), _YES, _report(death, style, u[18], LABEL_COLUMN)
    )
    return out


def _code_chunks(rows: int, seed: int, chunk_rows: int) -> Iterator[Codes]:
    """Cut the block stream into chunks of ``chunk_rows`` (the last one shorter)."""
    pending: Codes = np.empty((0, _N_FIELDS), dtype=np.int16)
    block = 0
    done = 0
    while done < rows:
        want = min(chunk_rows, rows - done)
        parts: list[Codes] = []
        have = 0
        while have < want:
            if not len(pending):
                pending = _simulate_block(seed, block)
                block += 1
            take = min(want - have, len(pending))
            parts.append(pending[:take])
            pending = pending[take:]
            have += take
        yield parts[0] if len(parts) == 1 else np.concatenate(parts)
        done += want


# --- Rendering -------------------------------------------------------------------------------
# A line is four pieces looked up in precomputed string tables and joined once per chunk:
# (earliest, report), (specimen, onset), the four demographic fields, the four clinical ones.
# No date is formatted and no field is quoted per row.

_DATE_TEXT: Final = [str(d).replace("-", "/") for d in _DAYS]
_SPEC_STRIDE: Final = _MAX_SPEC_LAG + 1
_REPORT_STRIDE: Final = _MAX_REPORT_LAG + 1


def _csv_field(value: str) -> str:
    """Quote like the csv module's QUOTE_MINIMAL (race values contain commas)."""
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _values(column: str) -> tuple[str, ...]:
    return LABEL_VALUES if column == LABEL_COLUMN else VOCABULARY[column]


def _product_table(columns: tuple[str, ...], end: str) -> npt.NDArray[np.object_]:
    """Every combination of the columns' values as CSV text, indexed by mixed-radix code."""
    table = [""]
    for col in columns:
        table = [f"{head}{_csv_field(v)}," for head in table for v in _values(col)]
    return np.array([t[:-1] + end for t in table], dtype=object)


_DEMO_COLUMNS: Final = ("current_status", "sex", "age_group", "race_ethnicity_combined")
_CLINICAL_COLUMNS: Final = ("hosp_yn", "icu_yn", LABEL_COLUMN, "medcond_yn")
_DEMO_SIZES: Final = tuple(len(_values(c)) for c in _DEMO_COLUMNS)
_CLINICAL_SIZE: Final = len(LABEL_VALUES)
_DEMO_TABLE: Final = _product_table(_DEMO_COLUMNS, ",")
_CLINICAL_TABLE: Final = _product_table(_CLINICAL_COLUMNS, "\n")
_EARLY_TABLE: Final = np.array(
    [
        f"{_DATE_TEXT[d]},{_DATE_TEXT[d + r]},"
        for d in range(_LAST_EARLIEST + 1)
        for r in range(_REPORT_STRIDE)
    ],
    dtype=object,
)
_LATE_TABLE: Final = np.array(
    [
        f"{_DATE_TEXT[d + s]},{_DATE_TEXT[d] if onset else ''},"
        for d in range(_LAST_EARLIEST + 1)
        for s in range(_SPEC_STRIDE)
        for onset in (0, 1)
    ],
    dtype=object,
)
_HEADER: Final = ",".join(ALL_COLUMNS) + "\n"


def _render(codes: Codes) -> bytes:
    c = codes.astype(np.int64)
    day = c[:, _DAY]
    demo = c[:, _STATUS]
    for field, size in zip((_SEX, _AGE, _RACE), _DEMO_SIZES[1:], strict=True):
        demo = demo * size + c[:, field]
    clinical = c[:, _HOSP]
    for field in (_ICU, _DEATH, _MEDCOND):
        clinical = clinical * _CLINICAL_SIZE + c[:, field]
    pieces = np.empty((len(c), 4), dtype=object)
    pieces[:, 0] = _EARLY_TABLE[day * _REPORT_STRIDE + c[:, _REPORT_LAG]]
    pieces[:, 1] = _LATE_TABLE[(day * _SPEC_STRIDE + c[:, _SPEC_LAG]) * 2 + c[:, _ONSET]]
    pieces[:, 2] = _DEMO_TABLE[demo]
    pieces[:, 3] = _CLINICAL_TABLE[clinical]
    return "".join(pieces.ravel().tolist()).encode("ascii")


def _frame(codes: Codes) -> pd.DataFrame:
    day = codes[:, _DAY].astype(np.int64)
    dates = np.array(_DATE_TEXT, dtype=object)
    columns: dict[str, npt.NDArray[np.object_]] = {
        "cdc_case_earliest_dt": dates[day],
        "cdc_report_dt": dates[day + codes[:, _REPORT_LAG]],
        "pos_spec_dt": dates[day + codes[:, _SPEC_LAG]],
        "onset_dt": np.where(codes[:, _ONSET] == 1, dates[day], ""),
    }
    for field, col in _CATEGORICAL:
        columns[col] = np.array(_values(col), dtype=object)[codes[:, field]]
    return pd.DataFrame({col: columns[col] for col in ALL_COLUMNS})


def generate_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """The first ``rows`` rows of the file :func:`write_synthetic_csv` writes for ``seed``, as
    strings (an empty ``onset_dt`` is ``""``), for tests and notebooks that need no file."""
    _check(rows, seed, 1)
    frames = [_frame(codes) for codes in _code_chunks(rows, seed, max(rows, 1))]
    return frames[0] if frames else _frame(np.empty((0, _N_FIELDS), dtype=np.int16))


def write_synthetic_csv(
    path: Path,
    rows: int,
    seed: int = 0,
    chunk_rows: int = 500_000,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``rows`` synthetic rows in the CDC schema (header in ``ALL_COLUMNS`` order) to
    ``path``, chunk by chunk so memory stays bounded whatever ``rows`` is.

    Determinism: the bytes depend only on ``(seed, rows)``, not on ``chunk_rows`` or the run,
    and a file of ``n`` rows is the first ``n`` rows of any longer file with the same seed.
    Across machines and numpy versions it holds as far as numpy's random streams and float
    math agree (they normally do); changing this module's constants changes every file.

    The file appears under ``path`` only once complete: it is written to a temporary file in
    the same folder and renamed over ``path``, so a crash or an exception (including one raised
    by ``on_progress``, which gets the rows written so far after each chunk) leaves no partial
    file behind.
    """
    _check(rows, seed, chunk_rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_HEADER.encode("ascii"))
            written = 0
            for codes in _code_chunks(rows, seed, chunk_rows):
                out.write(_render(codes))
                written += len(codes)
                if on_progress is not None:
                    on_progress(written)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def synthetic_csv_chunks(rows: int, seed: int = 0, chunk_rows: int = 500_000) -> Iterator[bytes]:
    """The bytes :func:`write_synthetic_csv` writes, piece by piece, for a writer that is not a
    local file (an upload into an object store)."""
    _check(rows, seed, chunk_rows)
    yield _HEADER.encode("ascii")
    for codes in _code_chunks(rows, seed, chunk_rows):
        yield _render(codes)


def _check(rows: int, seed: int, chunk_rows: int) -> None:
    if rows < 0:
        raise ValueError(f"rows must be 0 or more, not {rows}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, not {seed}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
