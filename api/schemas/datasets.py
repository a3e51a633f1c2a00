"""Datasets: the listing, uploads and summaries."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.data.store import DATASET_NAME_PATTERN


class DatasetOut(BaseModel):
    name: str = Field(pattern=DATASET_NAME_PATTERN)
    size_bytes: int
    modified_at: datetime


class DatasetList(BaseModel):
    datasets: list[DatasetOut]
    default: str = Field(description="Used by POST /train when the body names no dataset.")


#: The smallest file POST /datasets accepts: the eight columns, and both outcomes.
EXAMPLE_CSV = (
    "current_status,sex,age_group,race_ethnicity_combined,hosp_yn,icu_yn,medcond_yn,death_yn\n"
    'Laboratory-confirmed case,Male,80+ Years,"White, Non-Hispanic",Yes,Yes,Yes,Yes\n'
    "Probable Case,Female,20 - 29 Years,Hispanic/Latino,No,No,No,No\n"
)


class DatasetUploadForm(BaseModel):
    """The multipart form of POST /datasets (documentation only: the body is streamed)."""

    file: bytes = Field(
        description=(
            "A CDC case surveillance CSV file, sent as a file part (with a filename). Whether "
            "it is usable depends on its content (columns, values, both outcomes), which no "
            "schema can say: 422 `invalid_dataset` if not."
        ),
        examples=[EXAMPLE_CSV],
    )


class DatasetSummaryOut(BaseModel):
    name: str = Field(
        pattern=DATASET_NAME_PATTERN,
        description="The name chosen by the server; use it in POST /train.",
    )
    rows: int
    labelled: int
    positives: int
    negatives: int
    invalid_values: dict[str, int] = Field(
        description="Per feature column, cells outside CDC's vocabulary (read as Missing)."
    )
    sha256: str
    size_bytes: int
