"""A fitted ``HistGradientBoostingClassifier`` evaluated on every feature combination at once.

Walking the 95,040 combinations through scikit-learn's predictor costs seconds: it visits every
tree for every row. Here each tree is walked once, over sets of categories instead of rows: a
split sends each category of its feature left or right, so every leaf ends with one set of
categories per feature, and a combination falls in the one leaf whose seven sets contain its
seven categories. With at most 64 leaves, a tree becomes, per feature and category, the 64-bit
mask of the leaves that admit it; the AND of a combination's seven masks has exactly one bit
set, the leaf it lands in. That is a few vectorised passes over 95,040 cells per tree. Trees
are added one by one onto the baseline, in scikit-learn's order, so each cell is the same
floating-point sum ``_raw_predict`` makes.

This reads scikit-learn's fitted internals (the predictors' node arrays, the known categories).
:mod:`shared.model.table` checks the result against ``predict_proba`` whenever it builds one,
and tabulates through the pipeline instead when this returns None.
"""

from __future__ import annotations

import math
from functools import reduce
from typing import Any

import numpy as np

from shared.data.schema import FEATURE_COLUMNS, VOCABULARY

__all__ = ["boosting_log_odds"]

_SHAPE = tuple(len(VOCABULARY[col]) for col in FEATURE_COLUMNS)
_FULL = tuple((1 << n) - 1 for n in _SHAPE)
_CATEGORIES = tuple(np.arange(n) for n in _SHAPE)
_LEAF_BITS = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
#: One word of a scikit-learn category bitset holds categories 0 to 31: enough for any column.
assert max(_SHAPE) <= 32

Masks = tuple[int, ...]


def boosting_log_odds(model: Any) -> np.ndarray | None:
    """The raw prediction (log-odds of class 1) of every combination in mixed-radix order, for
    a binary classifier fed the category codes as numbers; None for a model this cannot read
    (more than one tree per iteration, a tree of more than 64 leaves, unknown internals)."""
    try:
        predictors = model._predictors
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64)
        known, feature_index = model._bin_mapper.make_known_categories_bitsets()
    except AttributeError:
        return None
    if baseline.shape != (1, 1) or any(len(trees) != 1 for trees in predictors):
        return None
    known_words = [int(word) for word in np.asarray(known)[:, 0]] if len(known) else []
    table = np.full(_SHAPE, baseline[0, 0])
    for (tree,) in predictors:
        leaves = _leaves(tree, known_words, feature_index)
        if leaves is None or not _add_tree(table, *leaves):
            return None
    return table.reshape(-1)


def _leaves(
    tree: Any, known_words: list[int], feature_index: Any
) -> tuple[list[float], list[Masks]] | None:
    """Each reachable leaf's value and its category set per feature (bit masks)."""
    nodes = tree.nodes
    value = nodes["value"].tolist()
    feature = nodes["feature_idx"].tolist()
    is_leaf = nodes["is_leaf"].tolist()
    left, right = nodes["left"].tolist(), nodes["right"].tolist()
    categorical = nodes["is_categorical"].tolist()
    missing_left = nodes["missing_go_to_left"].tolist()
    bitset = nodes["bitset_idx"].tolist()
    threshold = nodes["num_threshold"].tolist()
    raw_words = [int(word) for word in np.asarray(tree.raw_left_cat_bitsets)[:, 0]]
    values: list[float] = []
    masks: list[Masks] = []
    stack: list[tuple[int, Masks]] = [(0, _FULL)]
    while stack:
        i, sets = stack.pop()
        if is_leaf[i]:
            values.append(value[i])
            masks.append(sets)
            continue
        f = feature[i]
        if f >= len(_SHAPE):
            return None
        if categorical[i]:
            # As the predictor decides: in the split's left set, left; else a known category
            # goes right, and one never seen in training goes where missing values go.
            goes_left = raw_words[bitset[i]]
            if missing_left[i]:
                goes_left |= _FULL[f] & ~known_words[int(feature_index[f])]
        else:
            goes_left = _at_most(threshold[i], f)
        here = sets[f]
        for child, subset in ((left[i], here & goes_left), (right[i], here & ~goes_left)):
            if subset:  # an empty set is a branch no combination reaches
                stack.append((child, (*sets[:f], subset, *sets[f + 1 :])))
    if len(values) > len(_LEAF_BITS):
        return None
    return values, masks


def _at_most(threshold: float, feature: int) -> int:
    """The categories ``c <= threshold`` of a numeric split on the codes, as a mask."""
    if threshold < 0:
        return 0
    if threshold >= _SHAPE[feature] - 1:
        return _FULL[feature]
    return (1 << (math.floor(threshold) + 1)) - 1


def _add_tree(table: np.ndarray, values: list[float], masks: list[Masks]) -> bool:
    """Add one tree's leaf values onto ``table``; False if the leaves do not partition it."""
    by_feature = np.array(masks, dtype=np.int64).T  # [feature, leaf]
    bits = _LEAF_BITS[: len(values)]
    per_category = [
        np.bitwise_or.reduce(
            np.where((by_feature[j][:, None] >> _CATEGORIES[j]) & 1 == 1, bits[:, None], 0),
            axis=0,
        ).astype(np.uint64)
        for j in range(len(_SHAPE))
    ]
    cells = reduce(np.bitwise_and.outer, per_category)
    if not cells.all():
        return False
    # A power of two converts to float exactly, and frexp gives its exponent: the leaf index.
    leaf = np.frexp(cells.astype(np.float64))[1] - 1
    table += np.asarray(values, dtype=np.float64)[leaf]
    return True
