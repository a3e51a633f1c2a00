import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from shared.data.loader import load_cases, validate_dataset
from shared.data.schema import (
    AGE_GROUPS,
    ALL_COLUMNS,
    DATE_COLUMNS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    LABEL_VALUES,
    RACE_ETHNICITY,
    VOCABULARY,
)
from shared.data.synthetic import generate_frame, write_synthetic_csv


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """Enough rows for stable shares and rates (deterministic: fixed seed)."""
    return generate_frame(200_000, seed=3)


@pytest.fixture(scope="module")
def labelled(big: pd.DataFrame) -> pd.DataFrame:
    rows = big[big[LABEL_COLUMN].isin(["Yes", "No"])].copy()
    rows["died"] = rows[LABEL_COLUMN] == "Yes"
    return rows


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "cases.csv"
    write_synthetic_csv(path, 20_000, seed=1, chunk_rows=7_000)
    return path


# --- Schema ---


def test_header_is_the_cdc_columns_in_order(small_file: Path) -> None:
    with small_file.open() as fh:
        assert fh.readline() == ",".join(ALL_COLUMNS) + "\n"
    assert list(generate_frame(10).columns) == list(ALL_COLUMNS)


def test_every_value_is_in_the_cdc_vocabulary(small_file: Path) -> None:
    frame = pd.read_csv(small_file, dtype=str, keep_default_na=False)
    for col in FEATURE_COLUMNS:
        assert set(frame[col]) <= set(VOCABULARY[col]), col
    assert set(frame[LABEL_COLUMN]) == set(LABEL_VALUES)
    assert set(frame["age_group"]) >= set(AGE_GROUPS)
    assert set(frame["race_ethnicity_combined"]) >= set(RACE_ETHNICITY)


def test_the_loader_reads_it_with_no_invalid_values(small_file: Path) -> None:
    summary = validate_dataset(small_file, chunk_rows=6_000)
    assert summary.rows == 20_000
    assert summary.invalid_values == dict.fromkeys(FEATURE_COLUMNS, 0)
    assert 0 < summary.positives < summary.negatives

    cases, report = load_cases(small_file)
    assert len(cases) == 20_000
    assert report.invalid_values == dict.fromkeys(FEATURE_COLUMNS, 0)
    assert report.positives == summary.positives
    for col in ("cdc_case_earliest_dt", "cdc_report_dt", "pos_spec_dt"):
        assert cases[col].notna().all(), col
    assert 0.3 < cases["onset_dt"].isna().mean() < 0.7


def test_dates_are_plausible(big: pd.DataFrame) -> None:
    date_re = re.compile(r"^202[01]/(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])$")
    for col in DATE_COLUMNS:
        values = big[col][big[col] != ""]
        assert values.str.match(date_re).all(), col
    dates = {col: pd.to_datetime(big[col], format="%Y/%m/%d") for col in DATE_COLUMNS}
    earliest = dates["cdc_case_earliest_dt"]
    report_lag = (dates["cdc_report_dt"] - earliest).dt.days
    spec_lag = (dates["pos_spec_dt"] - earliest).dt.days
    assert report_lag.between(0, 30).all() and spec_lag.between(0, 14).all()
    assert report_lag.mean() > 1 and (report_lag >= spec_lag).all()
    onset = dates["onset_dt"]
    assert ((onset == earliest) | onset.isna()).all()
    # Cases follow the epidemic: the 2020-21 winter dwarfs early 2020.
    month = big["cdc_case_earliest_dt"].str[:7]
    assert (month == "2021/01").sum() > 5 * (month == "2020/02").sum()


# --- File mechanics ---


def test_same_seed_same_bytes_whatever_the_chunking(tmp_path: Path) -> None:
    a, b, c, d = (tmp_path / f"{n}.csv" for n in "abcd")
    write_synthetic_csv(a, 5_000, seed=7)
    write_synthetic_csv(b, 5_000, seed=7)
    write_synthetic_csv(c, 5_000, seed=7, chunk_rows=999)
    write_synthetic_csv(d, 5_000, seed=8)
    assert sha256(a) == sha256(b) == sha256(c)
    assert sha256(d) != sha256(a)


def test_the_frame_is_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    write_synthetic_csv(path, 3_000, seed=5, chunk_rows=1_000)
    frame = generate_frame(3_000, seed=5)
    assert frame.to_csv(index=False, lineterminator="\n").encode() == path.read_bytes()


def test_a_shorter_file_is_a_prefix_of_a_longer_one(tmp_path: Path) -> None:
    short, long = tmp_path / "short.csv", tmp_path / "long.csv"
    write_synthetic_csv(short, 70_000, seed=2)  # crosses a block boundary
    write_synthetic_csv(long, 90_000, seed=2)
    assert long.read_bytes().startswith(short.read_bytes())


@pytest.mark.parametrize("rows", [0, 1, 1_000, 2_500])
def test_exact_row_count_and_progress(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "cases.csv"
    seen: list[int] = []
    write_synthetic_csv(path, rows, chunk_rows=1_000, on_progress=seen.append)
    lines = path.read_text().splitlines()
    assert len(lines) == rows + 1
    expected = [*range(1_000, rows, 1_000), rows] if rows else []
    assert seen == expected


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"

    def boom(rows_done: int) -> None:
        if rows_done >= 2_000:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_synthetic_csv(path, 5_000, chunk_rows=1_000, on_progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_text("old\n")

    def boom(rows_done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_synthetic_csv(path, 5_000, chunk_rows=1_000, on_progress=boom)
    assert path.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [path]


def test_it_creates_the_folder_and_replaces_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "cases.csv"
    write_synthetic_csv(path, 10)
    write_synthetic_csv(path, 20)
    assert len(path.read_text().splitlines()) == 21
    assert list(path.parent.iterdir()) == [path]


@pytest.mark.parametrize(("rows", "seed", "chunk_rows"), [(-1, 0, 10), (10, -1, 10), (10, 0, 0)])
def test_bad_arguments_are_refused(tmp_path: Path, rows: int, seed: int, chunk_rows: int) -> None:
    with pytest.raises(ValueError):
        write_synthetic_csv(tmp_path / "x.csv", rows, seed=seed, chunk_rows=chunk_rows)
    assert list(tmp_path.iterdir()) == []


# --- Realism ---


def share(big: pd.DataFrame, col: str, value: str) -> float:
    return float((big[col] == value).mean())


@pytest.mark.parametrize(
    ("col", "value", "low", "high"),
    [
        (LABEL_COLUMN, "Missing", 0.33, 0.43),
        (LABEL_COLUMN, "Unknown", 0.12, 0.19),
        ("hosp_yn", "Missing", 0.36, 0.50),
        ("hosp_yn", "Unknown", 0.09, 0.15),
        ("icu_yn", "Missing", 0.60, 0.72),
        ("icu_yn", "Unknown", 0.12, 0.20),
        ("medcond_yn", "Missing", 0.60, 0.74),
        ("medcond_yn", "Unknown", 0.09, 0.17),
        ("race_ethnicity_combined", "Unknown", 0.16, 0.22),
        ("race_ethnicity_combined", "Missing", 0.01, 0.03),
        ("current_status", "Probable Case", 0.03, 0.05),
        ("sex", "Unknown", 0.001, 0.01),
        ("sex", "Missing", 0.0005, 0.01),
    ],
)
def test_missing_and_unknown_shares_are_realistic(
    big: pd.DataFrame, col: str, value: str, low: float, high: float
) -> None:
    assert low < share(big, col, value) < high


def test_age_distribution_is_plausible(big: pd.DataFrame) -> None:
    ages = big["age_group"].value_counts(normalize=True)
    working = ages[["20 - 29 Years", "30 - 39 Years", "40 - 49 Years", "50 - 59 Years"]]
    assert working.sum() > 0.5
    assert (working > ages["80+ Years"]).all()
    assert ages[["Unknown", "Missing"]].sum() < 0.01


def test_deaths_are_rare_and_rise_with_age(labelled: pd.DataFrame) -> None:
    assert 0.01 < labelled["died"].mean() < 0.06
    by_age = labelled.groupby("age_group")["died"].mean()
    adults = by_age[list(AGE_GROUPS[2:])]
    assert adults.is_monotonic_increasing and adults.is_unique
    young = labelled[labelled["age_group"].isin(AGE_GROUPS[:2])]["died"].mean()
    assert young < by_age["20 - 29 Years"]
    assert by_age["80+ Years"] > 50 * by_age["20 - 29 Years"]
    assert by_age["80+ Years"] < 0.5


def test_hospital_icu_and_conditions_drive_deaths(labelled: pd.DataFrame) -> None:
    def rate(col: str, value: str) -> float:
        return float(labelled.loc[labelled[col] == value, "died"].mean())

    assert rate("hosp_yn", "Yes") > 10 * rate("hosp_yn", "No")
    assert rate("icu_yn", "Yes") > 3 * rate("icu_yn", "No")
    assert rate("medcond_yn", "Yes") > 5 * rate("medcond_yn", "No")


def test_hospitalisation_depends_on_age_and_conditions(big: pd.DataFrame) -> None:
    known = big[big["hosp_yn"].isin(["Yes", "No"])]
    hosp = known["hosp_yn"] == "Yes"
    by_age = hosp.groupby(known["age_group"]).mean()
    assert by_age["80+ Years"] > 5 * by_age["20 - 29 Years"]
    by_cond = hosp.groupby(known["medcond_yn"]).mean()
    assert by_cond["Yes"] > 3 * by_cond["No"]
    icu_known = big[big["icu_yn"].isin(["Yes", "No"])]
    assert (icu_known.loc[icu_known["hosp_yn"] == "No", "icu_yn"] == "No").all()


def test_race_shows_a_modest_disparity(labelled: pd.DataFrame) -> None:
    by_race = labelled.groupby("race_ethnicity_combined")["died"].mean()
    white = by_race["White, Non-Hispanic"]
    for group in ("Black, Non-Hispanic", "Hispanic/Latino"):
        assert white < by_race[group] < 3 * white


def test_a_logistic_regression_learns_the_outcome() -> None:
    frame = generate_frame(50_000, seed=11)
    rows = frame[frame[LABEL_COLUMN].isin(["Yes", "No"])]
    x = rows[list(FEATURE_COLUMNS)].astype(str)
    y = (rows[LABEL_COLUMN] == "Yes").to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    model = make_pipeline(
        OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=1_000)
    )
    model.fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc > 0.85
    assert np.unique(y_test).size == 2
