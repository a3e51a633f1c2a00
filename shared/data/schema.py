"""The CDC COVID-19 Case Surveillance Public Use Data schema, as the project uses it.

The vocabularies are CDC's own strings. Anything outside them is read as ``Missing``
(and counted), because real releases carry stray values and one must not sink a load.
"""

from __future__ import annotations

import re
from typing import Final

DATE_COLUMNS: Final = ("cdc_case_earliest_dt", "cdc_report_dt", "pos_spec_dt", "onset_dt")
FEATURE_COLUMNS: Final = (
    "current_status",
    "sex",
    "age_group",
    "race_ethnicity_combined",
    "hosp_yn",
    "icu_yn",
    "medcond_yn",
)
LABEL_COLUMN: Final = "death_yn"
ALL_COLUMNS: Final = (
    "cdc_case_earliest_dt",
    "cdc_report_dt",
    "pos_spec_dt",
    "onset_dt",
    "current_status",
    "sex",
    "age_group",
    "race_ethnicity_combined",
    "hosp_yn",
    "icu_yn",
    "death_yn",
    "medcond_yn",
)
REQUIRED_COLUMNS: Final = (*FEATURE_COLUMNS, LABEL_COLUMN)

MISSING: Final = "Missing"
UNKNOWN: Final = "Unknown"
YES: Final = "Yes"
NO: Final = "No"

YES_NO: Final = (YES, NO, UNKNOWN, MISSING)
AGE_GROUPS: Final = (
    "0 - 9 Years",
    "10 - 19 Years",
    "20 - 29 Years",
    "30 - 39 Years",
    "40 - 49 Years",
    "50 - 59 Years",
    "60 - 69 Years",
    "70 - 79 Years",
    "80+ Years",
)
RACE_ETHNICITY: Final = (
    "American Indian/Alaska Native, Non-Hispanic",
    "Asian, Non-Hispanic",
    "Black, Non-Hispanic",
    "Hispanic/Latino",
    "Multiple/Other, Non-Hispanic",
    "Native Hawaiian/Other Pacific Islander, Non-Hispanic",
    "White, Non-Hispanic",
)

#: Allowed values of every feature column, in a fixed order (the order is part of the model's
#: encoding contract: the fast scoring path and the one-hot encoder both rely on it).
VOCABULARY: Final[dict[str, tuple[str, ...]]] = {
    "current_status": ("Laboratory-confirmed case", "Probable Case", MISSING),
    "sex": ("Female", "Male", "Other", UNKNOWN, MISSING),
    "age_group": (*AGE_GROUPS, UNKNOWN, MISSING),
    "race_ethnicity_combined": (*RACE_ETHNICITY, UNKNOWN, MISSING),
    "hosp_yn": YES_NO,
    "icu_yn": YES_NO,
    "medcond_yn": YES_NO,
}
LABEL_VALUES: Final = YES_NO

#: Cell contents that mean "no value"; they are read as ``Missing`` (compared without case and
#: surrounding spaces, see :func:`is_empty_marker`).
EMPTY_MARKERS: Final = frozenset({"", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A"})
_EMPTY_FOLDED: Final = frozenset(marker.casefold() for marker in EMPTY_MARKERS)

#: Columns whose per-group metrics are reported, because the data carries visible bias.
GROUP_COLUMNS: Final = ("sex", "age_group", "race_ethnicity_combined")

_HEADER_ALIASES: Final = {
    "race and ethnicity (combined)": "race_ethnicity_combined",
    "race_and_ethnicity_combined": "race_ethnicity_combined",
    "race_ethnicity": "race_ethnicity_combined",
}


def canonical_header(name: str) -> str:
    """Map a header as real files write it to the schema's column name.

    Real releases differ: stray spaces, a BOM, ``Race and ethnicity (combined)``.
    Unknown headers come back normalised but otherwise unchanged, and are ignored later.
    """
    cleaned = name.replace("\ufeff", "").strip()
    lowered = cleaned.lower()
    if lowered in _HEADER_ALIASES:
        return _HEADER_ALIASES[lowered]
    snake = re.sub(r"[^0-9a-z]+", "_", lowered).strip("_")
    return _HEADER_ALIASES.get(snake, snake)


def label_to_int(value: str) -> int | None:
    """``Yes`` is 1, ``No`` is 0; anything else is unlabelled (left out of training)."""
    value = value.strip()
    if value == YES:
        return 1
    if value == NO:
        return 0
    return None


def is_empty_marker(value: str) -> bool:
    """Whether a cell means "no value" (blank, ``NA``, ``n/a``, ``NULL``...), whatever its case."""
    return value.strip().casefold() in _EMPTY_FOLDED
