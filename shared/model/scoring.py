"""Serving-side scoring: the production model, held in memory, scored without pandas.

A one-row ``predict_proba`` through the scikit-learn pipeline costs milliseconds, almost all
of it DataFrame handling and one-hot encoding. For a one-hot logistic regression the log-odds
of a record is the intercept plus one coefficient per column, so the fitted pipeline is turned
once into a lookup table per column, indexed by the schema's category codes; scoring is then
seven array lookups and an exp. The result equals ``pipeline.predict_proba`` (tested to 1e-9).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import NoProductionModelError
from shared.registry.versions import ModelRegistry

log = logging.getLogger(__name__)


class Scorer:
    """One model version, loaded and ready to score: P(death_yn = Yes) for rows of feature
    codes, from lookup tables when the pipeline has the shape we know, else from the pipeline
    itself."""

    def __init__(self, version: str, pipeline: Any) -> None:
        self.version = version
        self.pipeline = pipeline
        self._tables = self._lookup_tables(pipeline)

    @staticmethod
    def _lookup_tables(pipeline: Any) -> tuple[np.ndarray, float] | None:
        """Coefficient per (column, code), or None if the pipeline is not the shape we know."""
        steps = getattr(pipeline, "named_steps", {})
        encoder, model = steps.get("onehot"), steps.get("logisticregression")
        if encoder is None or model is None or getattr(model, "coef_", None) is None:
            return None
        if model.coef_.shape[0] != 1 or list(model.classes_) != [0, 1]:
            return None
        coef = model.coef_[0]
        width = max(len(VOCABULARY[col]) for col in FEATURE_COLUMNS)
        table = np.zeros((len(FEATURE_COLUMNS), width))
        offset = 0
        for j, (col, categories) in enumerate(
            zip(FEATURE_COLUMNS, encoder.categories_, strict=True)
        ):
            position = {str(value): offset + i for i, value in enumerate(categories)}
            for code, value in enumerate(VOCABULARY[col]):
                if value in position:  # a value the encoder never saw scores 0, as "ignore" does
                    table[j, code] = coef[position[value]]
            offset += len(categories)
        if offset != len(coef):
            return None
        return table, float(model.intercept_[0])

    def predict_proba(self, codes: np.ndarray) -> np.ndarray:
        if self._tables is None:
            return np.asarray(self.pipeline.predict_proba(decode_features(codes))[:, 1])
        table, intercept = self._tables
        logit = intercept + table[_COLUMNS, codes.astype(np.intp)].sum(axis=1)
        return np.asarray(1.0 / (1.0 + np.exp(-logit)))


class ProductionModel:
    """The production model of one serving process, following the registry's alias.

    A background thread stats the alias every ``poll_seconds`` (a cheap ``stat``) and loads a
    newly promoted version before swapping the reference: a request in flight keeps the model
    it started with, and every answer names the version that computed it. Nothing is loaded on
    the request path except the very first model if the thread has not yet loaded it.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        poll_seconds: float = 0.2,
        on_loaded: Callable[[Scorer], None] | None = None,
    ) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        #: Called (outside the lock) after a newly loaded model was swapped in.
        self.on_loaded = on_loaded
        self._model: Scorer | None = None
        self._token: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start following the alias (idempotent; safe to call in every process)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="model-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def current(self) -> Scorer:
        model = self._model
        if model is None:
            self.refresh()
            model = self._model
        if model is None:
            raise NoProductionModelError(
                "no production model yet: train one first (POST /train or rvt train)"
            )
        return model

    def refresh(self) -> bool:
        """Load the production version if the alias changed; True if the model changed."""
        with self._lock:
            token = self.registry.alias_token()
            if token == self._token and self._model is not None:
                return False
            version = self.registry.production_version()
            if version is None:
                self._model, self._token = None, token
                return True
            if self._model is not None and self._model.version == version:
                self._token = token
                return False
            model = self._model = Scorer(version, self.registry.load(version))
            self._token = token
        log.info("serving model %s", version)
        if self.on_loaded is not None:
            self.on_loaded(model)
        return True

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # a bad promotion must not kill the follower; keep the old model
                log.exception("could not load the production model; keeping the current one")
                time.sleep(self.poll_seconds)


_COLUMNS = np.arange(len(FEATURE_COLUMNS))
_LIMITS = np.array([len(VOCABULARY[col]) for col in FEATURE_COLUMNS])
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.full(256, 255, dtype=np.uint8)
_UNHEX[_HEX] = np.arange(16, dtype=np.uint8)
_TO_HEX = bytes.maketrans(bytes(range(16)), b"0123456789abcdef")


def encode_codes(codes: np.ndarray) -> str:
    """Feature codes as a compact string (one hex digit per cell) for a task message:
    far smaller and quicker to (de)serialise than nested JSON lists. (A code outside 0-15
    comes out as a character that :func:`decode_codes` refuses.)"""
    raw = np.ascontiguousarray(codes, dtype=np.int8).tobytes()
    return raw.translate(_TO_HEX).decode("latin-1")


def decode_codes(text: str) -> np.ndarray:
    """The inverse of :func:`encode_codes`, checking every code against the vocabularies."""
    raw = _UNHEX[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    width = len(FEATURE_COLUMNS)
    if len(raw) == 0 or len(raw) % width:
        raise ValueError(f"expected a multiple of {width} codes, got {len(raw)}")
    codes = raw.reshape(-1, width).astype(np.int8)
    if (raw == 255).any() or (codes >= _LIMITS).any():
        raise ValueError("a feature code is outside its vocabulary")
    return codes


def score_batch(model: Scorer, batch: list[list[str]]) -> list[dict[str, Any]]:
    """The replies to a batch of ``[request_id, encoded codes]``, in order, all scored by one
    model: the batch's codes are decoded and scored in one call (a batch of single-record
    requests costs about what one request does); if any request's codes are malformed, each
    request is scored alone so that only the bad one gets an error."""
    width = len(FEATURE_COLUMNS)
    if batch and all(encoded and len(encoded) % width == 0 for _, encoded in batch):
        try:
            probabilities = model.predict_proba(
                decode_codes("".join(encoded for _, encoded in batch))
            ).tolist()
        except ValueError:
            pass
        else:
            replies = []
            start = 0
            for request_id, encoded in batch:
                end = start + len(encoded) // width
                replies.append(
                    {
                        "id": request_id,
                        "version": model.version,
                        "probabilities": probabilities[start:end],
                    }
                )
                start = end
            return replies
    return [_score_one(model, request_id, encoded) for request_id, encoded in batch]


def _score_one(model: Scorer, request_id: str, encoded: str) -> dict[str, Any]:
    try:
        probabilities = model.predict_proba(decode_codes(encoded))
    except ValueError as exc:
        return {"id": request_id, "error": {"code": "bad_request", "message": str(exc)}}
    return {"id": request_id, "version": model.version, "probabilities": probabilities.tolist()}
