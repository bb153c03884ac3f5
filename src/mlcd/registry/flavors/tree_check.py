"""Fitted trees are data that scikit-learn's compiled code follows without bounds checks.

A crafted ``Tree`` or ``TreePredictor`` (a child index past the node array, a child that
points back up, a feature index past the input's columns) crashes the process or loops for
ever at the first prediction: skops cannot see that, so every tree of a loaded model is
checked before the model is handed out. Children always come after their parent in the
arrays scikit-learn writes, which also rules out cycles.
"""

from __future__ import annotations

from typing import Any

from mlcd.errors import UnsafeModel


def check_trees(model: Any, where: str) -> None:
    """Refuse a model with a tree whose node or feature indices are out of range.

    Raises:
        UnsafeModel: naming the first bad tree and node.
    """
    import numpy as np
    from sklearn.ensemble import BaseEnsemble
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree import BaseDecisionTree
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    stack: list[tuple[Any, int | None]] = [(model, None)]
    while stack:
        obj, limit = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float)):
            continue
        seen.add(id(obj))
        if isinstance(obj, Tree):
            _check(
                where,
                "tree",
                obj.children_left,
                obj.children_right,
                obj.children_left == -1,
                obj.feature,
                _least(limit, obj.n_features),
            )
            continue
        if isinstance(obj, TreePredictor):
            nodes = obj.nodes
            if not nodes.dtype.names or not {"left", "right", "is_leaf"} <= set(nodes.dtype.names):
                raise _bad(where, "a TreePredictor without the node layout scikit-learn writes")
            _check(
                where,
                "tree",
                nodes["left"],
                nodes["right"],
                nodes["is_leaf"].astype(bool),
                nodes["feature_idx"],
                limit,
            )
            continue
        # The estimator that validated the input bounds the columns its trees may read; a
        # composite that transforms its input (a pipeline, a column transformer) does not.
        own = getattr(obj, "__dict__", {}).get("n_features_in_")
        if isinstance(obj, (BaseDecisionTree, BaseEnsemble)) or hasattr(obj, "_predictors"):
            limit = _least(limit, own) if isinstance(own, (int, np.integer)) else limit
        else:
            limit = None
        stack.extend((child, limit) for child in _children(obj, np))


def _children(obj: Any, np: Any) -> list[Any]:
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (list, tuple, set)):
        return list(obj)
    if isinstance(obj, np.ndarray):
        return list(obj.ravel()) if obj.dtype == object else []
    return list(getattr(obj, "__dict__", {}).values())


def _least(limit: int | None, other: Any) -> int:
    return int(other) if limit is None else min(limit, int(other))


def _check(
    where: str, what: str, left: Any, right: Any, leaf: Any, feature: Any, limit: int | None
) -> None:
    import numpy as np

    count = len(left)
    index = np.arange(count)
    inner = ~np.asarray(leaf, dtype=bool)
    bad = inner & ((left <= index) | (left >= count) | (right <= index) | (right >= count))
    if limit is not None:
        bad |= inner & ((feature < 0) | (feature >= limit))
    if count == 0 or bad.any():
        node = int(np.argmax(bad)) if count else 0
        raise _bad(
            where,
            f"a {what} whose node {node} of {count} points outside the tree or past the "
            f"{limit} input columns",
        )


def _bad(where: str, what: str) -> UnsafeModel:
    return UnsafeModel(
        f"{where} holds {what}; predicting with it would crash or hang the process",
        hint="this file was crafted or corrupted; train and save the model again",
    )
