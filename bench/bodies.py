"""Request bodies of the benchmark: records with CDC's strings, varied and reproducible."""

from __future__ import annotations

import json
import random

from shared.data.schema import FEATURE_COLUMNS, VOCABULARY

#: The single-record body: a full record, as a client would send it.
RECORD = {
    "current_status": "Laboratory-confirmed case",
    "sex": "Female",
    "age_group": "70 - 79 Years",
    "race_ethnicity_combined": "White, Non-Hispanic",
    "hosp_yn": "Yes",
    "icu_yn": "No",
    "medcond_yn": "Yes",
}


def records(n: int, seed: int = 0) -> list[dict[str, str]]:
    if n == 1:
        return [dict(RECORD)]
    rng = random.Random(seed)
    return [{col: rng.choice(VOCABULARY[col]) for col in FEATURE_COLUMNS} for _ in range(n)]


def predict_body(n: int) -> bytes:
    return json.dumps({"records": records(n)}, separators=(",", ":")).encode()
