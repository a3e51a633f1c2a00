"""What every peer app shares: the registry version to serve, loaded the project's way (the
registry matches the name against its listing and checks the artifact's sha256 before
unpickling), and records turned into the scorer's feature codes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.model.scoring import Scorer
from shared.registry.versions import ModelRegistry

#: Environment variables the bench sets for a peer process.
MODELS_ENV = "RVT_PEER_MODELS"
VERSION_ENV = "RVT_PEER_VERSION"

_CODES = {
    col: {value: code for code, value in enumerate(VOCABULARY[col])} for col in FEATURE_COLUMNS
}


def served_version() -> tuple[Path, str]:
    try:
        return Path(os.environ[MODELS_ENV]), os.environ[VERSION_ENV]
    except KeyError as exc:
        raise RuntimeError(f"a peer app needs {MODELS_ENV} and {VERSION_ENV} set") from exc


def load_pipeline() -> Any:
    """The fitted pipeline of the served version, checksum-verified by the registry."""
    models, version = served_version()
    return ModelRegistry(models).load(version)


def load_scorer() -> Scorer:
    """The project's table scorer of the served version (tabulated once, here)."""
    models, version = served_version()
    return Scorer(version, ModelRegistry(models).load(version))


def encode_columns(columns: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Column-wise strings (a V2 request's inputs) as (n, 7) feature codes; a column left out
    is ``Missing``. Raises ValueError, naming the column, for anything outside the vocabulary."""
    unknown = set(columns) - set(FEATURE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown inputs {sorted(unknown)}; expected {list(FEATURE_COLUMNS)}")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"inputs of different lengths {sorted(lengths)}")
    n = lengths.pop()
    codes = np.empty((n, len(FEATURE_COLUMNS)), dtype=np.int8)
    for j, col in enumerate(FEATURE_COLUMNS):
        lookup = _CODES[col]
        values = columns.get(col, [MISSING] * n)
        try:
            codes[:, j] = [lookup[v] for v in values]
        except KeyError as exc:
            raise ValueError(f"{col}: {exc.args[0]!r} is not one of {VOCABULARY[col]}") from exc
    return codes


def encode_records(records: Sequence[Mapping[str, str]]) -> np.ndarray:
    """Records (``/predict``'s body) as (n, 7) feature codes; see :func:`encode_columns`."""
    if not records:
        raise ValueError("no records")
    for record in records:
        extra = set(record) - set(FEATURE_COLUMNS)
        if extra:
            raise ValueError(f"unknown fields {sorted(extra)}")
    return encode_columns({col: [r.get(col, MISSING) for r in records] for col in FEATURE_COLUMNS})
