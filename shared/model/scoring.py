"""Serving-side scoring: a model version turned into tables, scored without pandas.

A one-row ``predict_proba`` through the scikit-learn pipeline costs milliseconds, almost all
of it DataFrame handling and encoding. The seven features are categorical, so a version is
evaluated once, when it loads, on all 95,040 feature combinations (:mod:`shared.model.table`),
whatever the estimator; scoring is then one lookup per record, equal to ``predict_proba`` to
1e-12 (tested). A version that carries its training distribution also gets the Shapley
contributions of every combination (:mod:`shared.model.explain`), so an explained record is
one more lookup. Which version a serving process holds is :mod:`shared.model.production`'s
business; the other versions it was asked for by name are held by a :class:`ScorerCache`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import DomainError, ExplanationUnavailableError, VersionNotFoundError
from shared.model.explain import Explainer, distribution_of
from shared.model.table import STRIDES, ModelTable, tabulate

log = logging.getLogger(__name__)

#: The third element of a batch item that asks for the record's contributions too.
EXPLAIN = "explain"
#: Where a batch item names the registry version that must score it. A batch item is
#: ``[request_id, codes]`` or ``[request_id, codes, EXPLAIN]`` for the production model (as
#: before versions could be asked for), and ``[request_id, codes, flags, version]`` for a
#: given version, ``flags`` being ``""`` or ``EXPLAIN``.
VERSION_FIELD = 3


def batch_item(
    request_id: str, encoded: str, explain: bool = False, version: str | None = None
) -> list[str]:
    """One request's item in a batch (see :data:`VERSION_FIELD`)."""
    if version is not None:
        return [request_id, encoded, EXPLAIN if explain else "", version]
    return [request_id, encoded, EXPLAIN] if explain else [request_id, encoded]


def item_version(item: list[str]) -> str | None:
    """The version a batch item asks for; None for the production model."""
    return (item[VERSION_FIELD] or None) if len(item) > VERSION_FIELD else None


class Scorer:
    """One model version, loaded and ready to score: P(death_yn = Yes) for rows of feature
    codes, from the version's table when the pipeline has a shape we know, else from the
    pipeline itself; and each feature's contribution, when the version can explain."""

    def __init__(self, version: str, pipeline: Any) -> None:
        started = time.perf_counter()
        self.version = version
        self.pipeline = pipeline
        self.table: ModelTable | None = tabulate(pipeline)
        distribution = distribution_of(pipeline) if self.table is not None else None
        self.explainer: Explainer | None = None
        if self.table is not None and distribution is not None:
            self.explainer = Explainer.build(self.table.log_odds, distribution)
        self._probability = None if self.table is None else self.table.probability
        #: Load-time work: tabulating the model and precomputing its contributions.
        self.compile_seconds = time.perf_counter() - started
        log.info(
            "model %s compiled in %.3f s (%s)",
            version,
            self.compile_seconds,
            "no table: scored by the pipeline" if self.table is None else self.table.method,
            extra={"model_version": version, "compile_seconds": self.compile_seconds},
        )

    def predict_proba(self, codes: np.ndarray) -> np.ndarray:
        if self._probability is None:
            return np.asarray(self.pipeline.predict_proba(decode_features(codes))[:, 1])
        return self._probability[codes @ STRIDES]

    def explain(self, codes: np.ndarray) -> tuple[float, np.ndarray]:
        """The baseline log-odds, and the (n, 7) contributions of ``codes``' records."""
        if self.explainer is None:
            why = (
                "it is not a pipeline of a known shape"
                if self.table is None
                else "it was saved without its training distribution (trained before "
                "explanations existed); train a new version"
            )
            raise ExplanationUnavailableError(
                f"model version {self.version} cannot explain its predictions: {why}"
            )
        return self.explainer.baseline, self.explainer.explain(codes @ STRIDES)


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
    """The replies to a batch of ``[request_id, encoded codes]`` (``[request_id, encoded
    codes, EXPLAIN]`` for a request that also wants its contributions), in order, all scored
    by one model: the batch's codes are decoded and scored in one call (a batch of
    single-record requests costs about what one request does), and only the requests that ask
    are explained; if any request's codes are malformed, each request is scored alone so that
    only the bad one gets an error."""
    width = len(FEATURE_COLUMNS)
    if batch and all(item[1] and len(item[1]) % width == 0 for item in batch):
        try:
            codes = decode_codes("".join(item[1] for item in batch))
        except ValueError:
            pass
        else:
            probabilities = model.predict_proba(codes).tolist()
            replies = []
            start = 0
            for item in batch:
                end = start + len(item[1]) // width
                reply = {
                    "id": item[0],
                    "version": model.version,
                    "probabilities": probabilities[start:end],
                }
                if len(item) > 2 and item[2] == EXPLAIN:
                    reply = _explained(model, reply, codes[start:end])
                replies.append(reply)
                start = end
            return replies
    return [_score_one(model, item) for item in batch]


def _explained(model: Scorer, reply: dict[str, Any], codes: np.ndarray) -> dict[str, Any]:
    try:
        baseline, contributions = model.explain(codes)
    except ExplanationUnavailableError as exc:
        return {"id": reply["id"], "error": {"code": exc.code, "message": exc.message}}
    reply["explanation"] = {"baseline": baseline, "contributions": contributions.tolist()}
    return reply


def _score_one(model: Scorer, item: list[str]) -> dict[str, Any]:
    request_id, encoded = item[0], item[1]
    try:
        codes = decode_codes(encoded)
    except ValueError as exc:
        return {"id": request_id, "error": {"code": "bad_request", "message": str(exc)}}
    reply = {
        "id": request_id,
        "version": model.version,
        "probabilities": model.predict_proba(codes).tolist(),
    }
    if len(item) > 2 and item[2] == EXPLAIN:
        return _explained(model, reply, codes)
    return reply


def _error_replies(items: list[list[str]], exc: DomainError) -> list[dict[str, Any]]:
    error = {"code": exc.code, "message": exc.message}
    return [{"id": item[0], "error": error} for item in items]


def score_by_version(
    batch: list[list[str]], scorer_for: Callable[[str | None], Scorer]
) -> list[dict[str, Any]]:
    """The replies to a batch whose items may name versions (see :data:`VERSION_FIELD`), in the
    batch's order: each version's items are scored together by ``scorer_for(version)`` (None:
    the production model), and a version that cannot be had (none in production, not in the
    registry) gets one error reply per item of it, the others being unaffected. A batch of
    production items only, the common case, is one :func:`score_batch` call, as before."""
    if all(len(item) <= VERSION_FIELD for item in batch):
        try:
            model = scorer_for(None)
        except DomainError as exc:
            return _error_replies(batch, exc)
        return score_batch(model, batch)
    groups: dict[str | None, list[int]] = {}
    for index, item in enumerate(batch):
        groups.setdefault(item_version(item), []).append(index)
    replies: list[dict[str, Any]] = [{} for _ in batch]
    for version, indices in groups.items():
        items = [batch[i] for i in indices]
        try:
            scored = score_batch(scorer_for(version), items)
        except DomainError as exc:
            scored = _error_replies(items, exc)
        for index, reply in zip(indices, scored, strict=True):
            replies[index] = reply
    return replies


class ScorerCache:
    """Versions other than production that a serving process was asked for, kept loaded (at
    most ``size``, the least recently used dropped first), each tabulated like production.

    Only versions the registry lists are ever loaded (``load`` is
    :meth:`~shared.registry.versions.ModelRegistry.load`, which matches the name against
    the listing and checks the artifact's sha256 before unpickling), and a version the
    registry stops listing (deleted) is dropped at the next :meth:`revalidate`, which the
    serving process runs each time it checks the production alias: woken by an announcement on
    the registry channel, or at its poll. A load and a revalidation hold the same lock, so a
    version deleted while it loads is never kept."""

    def __init__(
        self,
        load: Callable[[str], Any],
        listing: Callable[[], Collection[str]],
        size: int,
    ) -> None:
        if size < 1:
            raise ValueError(f"a version cache holds at least one version, not {size}")
        self._load = load
        self._listing = listing
        self.size = size
        self._scorers: OrderedDict[str, Scorer] = OrderedDict()
        self._lock = threading.Lock()

    def versions(self) -> list[str]:
        """The versions held, least recently used first."""
        with self._lock:
            return list(self._scorers)

    def get(self, version: str) -> Scorer:
        """``version``'s scorer, loaded on a miss (in the caller's thread: the first request
        for a version waits for its load, as the very first production request does)."""
        with self._lock:
            scorer = self._scorers.get(version)
            if scorer is not None:
                self._scorers.move_to_end(version)
                return scorer
            if version not in self._listing():
                raise VersionNotFoundError(
                    f"model version {version!r} not found", {"version": version}
                )
            scorer = Scorer(version, self._load(version))
            self._scorers[version] = scorer
            while len(self._scorers) > self.size:
                dropped, _ = self._scorers.popitem(last=False)
                log.info("version cache: dropped %s (least recently used)", dropped)
        log.info("version cache: loaded %s", version, extra={"model_version": version})
        return scorer

    def revalidate(self) -> list[str]:
        """Drop every version the registry no longer lists; the versions dropped. A listing
        that fails drops them all (what is held can no longer be checked), so that a deleted
        version is never served; the next request for one loads it again if it is listed."""
        with self._lock:
            if not self._scorers:
                return []
            try:
                listed = set(self._listing())
            except Exception as exc:
                log.warning("version cache: the registry could not be listed (%s): emptied", exc)
                listed = set()
            dropped = [version for version in self._scorers if version not in listed]
            for version in dropped:
                del self._scorers[version]
        for version in dropped:
            log.info("version cache: dropped %s (no longer in the registry)", version)
        return dropped
