"""Metrics for classification and regression, written once over row weights.

Every metric is a function of a weight matrix ``W`` (resamples x rows) so that the point
estimate (``W`` = one row of ones) and the paired bootstrap (``W`` = resample counts) share
one implementation, and the bootstrap runs as a few matrix products instead of a Python
loop. The point estimates match scikit-learn's (tests compare them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from mlcd.errors import EvaluationError

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("rmse", "mae", "r2", "mape")
#: Measured on the model, not on rows: never bootstrapped.
BUDGETS = ("latency_p50_ms", "latency_p99_ms", "size_mb")
#: Wall-clock latencies: reported next to the CPU-time budgets (see :func:`latency`).
WALL = ("latency_p50_wall_ms", "latency_p99_wall_ms")
#: Model-level measures that are not bootstrapped either.
MODEL_LEVEL = (*BUDGETS, *WALL, "calibration_error")
HIGHER_IS_BETTER = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "r2": True,
    "mape": False,
    "latency_p50_ms": False,
    "latency_p99_ms": False,
    "latency_p50_wall_ms": False,
    "latency_p99_wall_ms": False,
    "size_mb": False,
    "calibration_error": False,
}
ALL_METRICS = tuple(HIGHER_IS_BETTER)
_EPS = float(np.finfo(np.float64).eps)


def metrics_for(task: str) -> tuple[str, ...]:
    """The row metrics of a task."""
    return CLASSIFICATION if task == "classification" else REGRESSION


class Scored:
    """One model's predictions on the evaluation rows, encoded for fast metrics.

    Classification: ``y`` and ``pred`` are class indices into ``classes``; ``proba`` has
    one column per class (None if the model gives no probabilities). Regression: floats.
    """

    def __init__(
        self,
        task: str,
        y: np.ndarray,
        pred: np.ndarray,
        proba: np.ndarray | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        self.task = task
        self.y = y
        self.pred = pred
        self.proba = proba
        self.classes = list(classes or [])
        self.n = len(y)

    @property
    def k(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def subset(self, mask: np.ndarray) -> Scored:
        """The rows where ``mask`` holds."""
        proba = None if self.proba is None else self.proba[mask]
        return Scored(self.task, self.y[mask], self.pred[mask], proba, self.classes)

    # ---- per-row vectors, computed once and reused by every resample
    @cached_property
    def correct(self) -> np.ndarray:
        """1.0 where the prediction is right (classification)."""
        return (self.y == self.pred).astype(np.float64)

    @cached_property
    def columns(self) -> tuple[dict[str, slice], np.ndarray]:
        """Every per-row quantity a metric sums, side by side (rows x columns), and where
        each sits: one matrix product with the weights then gives all the sums at once."""
        parts: list[tuple[str, np.ndarray]] = [("total", np.ones((self.n, 1)))]
        if self.task == "classification":
            true = np.eye(self.k, dtype=np.float64)[self.y]
            predicted = np.eye(self.k, dtype=np.float64)[self.pred]
            parts += [
                ("correct", self.correct[:, None]),
                ("tp", true * predicted),
                ("predicted", predicted),
                ("actual", true),
            ]
            if self.proba is not None:
                picked = self.proba[np.arange(self.n), self.y]
                parts.append(("log_loss", -np.log(np.clip(picked, _EPS, 1.0))[:, None]))
        else:
            error = self.pred - self.y
            # Centred: R²'s total sum of squares is shift-invariant, and sum(y²) - n·mean²
            # loses every digit when the mean dwarfs the spread.
            centred = self.y.astype(np.float64) - (float(self.y.mean()) if self.n else 0.0)
            parts += [
                ("se", (error**2)[:, None]),
                ("ae", np.abs(error)[:, None]),
                ("ape", (np.abs(error) / np.maximum(np.abs(self.y), _EPS))[:, None]),
                ("y", centred[:, None]),
                ("y2", (centred**2)[:, None]),
            ]
        where, position = {}, 0
        for name, block in parts:
            where[name] = slice(position, position + block.shape[1])
            position += block.shape[1]
        return where, np.ascontiguousarray(np.hstack([b for _, b in parts]))

    def sums(self, W: np.ndarray) -> dict[str, np.ndarray]:
        """Weighted sums of every column (resamples x width), cached per weight matrix."""
        cached = self.__dict__.get("_sums")
        if cached is not None and cached[0] is W:
            result: dict[str, np.ndarray] = cached[1]
            return result
        where, matrix = self.columns
        product = W @ matrix  # reads W once, whatever the number of metrics
        result = {name: product[:, span] for name, span in where.items()}
        self.__dict__["_sums"] = (W, result)
        return result

    def ranking(self, column: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For ROC AUC of class ``column``: negatives by score, positives, and for each
        positive the count of negatives scored below it (``lo``) and not above it (``hi``)."""
        cache = self.__dict__.setdefault("_rankings", {})
        if column not in cache:
            assert self.proba is not None
            scores = self.proba[:, column]
            is_positive = self.y == column
            negatives = np.flatnonzero(~is_positive)
            negatives = negatives[np.argsort(scores[negatives], kind="stable")]
            positives = np.flatnonzero(is_positive)
            ordered = scores[negatives]
            lo = np.searchsorted(ordered, scores[positives], side="left")
            hi = np.searchsorted(ordered, scores[positives], side="right")
            cache[column] = (negatives, positives, lo, hi)
        result: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = cache[column]
        return result


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _counts32(W: np.ndarray, scored: Scored) -> np.ndarray:
    # Resample counts are small integers: float32 holds them and their running sums exactly
    # below 2**24 rows, and halves the memory traffic of the gathers and sums that dominate
    # the bootstrap of ROC AUC. Converted once per weight matrix.
    if W.dtype == np.float32 or W.shape[1] >= 2**24:
        return W
    cached = scored.__dict__.get("_w32")
    if cached is not None and cached[0] is W:
        result: np.ndarray = cached[1]
        return result
    converted = W.astype(np.float32)
    scored.__dict__["_w32"] = (W, converted)
    return converted


def _auc_one(W: np.ndarray, scored: Scored, column: int) -> np.ndarray:
    # AUC = P(score of a positive > score of a negative), ties counting one half. Under
    # weights: sum over positives of w_i * (weight of negatives below + half of those tied),
    # with a running sum over the negatives sorted once by score.
    negatives, positives, lo, hi = scored.ranking(column)
    W = _counts32(W, scored)
    below = np.zeros((W.shape[0], len(negatives) + 1), dtype=W.dtype)
    np.cumsum(np.take(W, negatives, axis=1), axis=1, out=below[:, 1:])
    counted = np.take(below, lo, axis=1)
    if not np.array_equal(lo, hi):
        counted += np.take(below, hi, axis=1)
        counted *= 0.5
    weights_pos = np.take(W, positives, axis=1)
    numerator = (weights_pos * counted).sum(axis=1, dtype=np.float64)
    denominator = weights_pos.sum(axis=1, dtype=np.float64) * below[:, -1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _averaged(W: np.ndarray, scored: Scored, which: str) -> np.ndarray:
    sums = scored.sums(W)
    tp, predicted, actual = sums["tp"], sums["predicted"], sums["actual"]
    if which == "precision":
        per_class = _safe_div(tp, predicted)
    elif which == "recall":
        per_class = _safe_div(tp, actual)
    else:
        per_class = _safe_div(2 * tp, predicted + actual)
    if scored.k == 2:  # binary: the second class is the positive one
        result: np.ndarray = per_class[:, 1]
        return result
    present = (actual > 0) | (predicted > 0)  # macro over the classes seen, as scikit-learn
    return _safe_div((per_class * present).sum(axis=1), present.sum(axis=1).astype(np.float64))


def weighted(name: str, W: np.ndarray, scored: Scored) -> np.ndarray | None:
    """The metric ``name`` under each row of weights ``W``; None if it does not apply.

    ``W`` holds row counts (whole numbers: ones for the point estimate, resample counts for
    the bootstrap), which lets ROC AUC run in float32 without rounding.

    Raises:
        EvaluationError: an unknown metric name.
    """
    if scored.task == "classification":
        if name == "accuracy":
            sums = scored.sums(W)
            return _safe_div(sums["correct"][:, 0], sums["total"][:, 0])
        if name in ("precision", "recall", "f1"):
            return _averaged(W, scored, name)
        if name == "log_loss":
            if scored.proba is None:
                return None
            sums = scored.sums(W)
            return _safe_div(sums["log_loss"][:, 0], sums["total"][:, 0])
        if name == "roc_auc":
            if scored.proba is None or scored.k < 2:
                return None
            if scored.k == 2:
                return _auc_one(W, scored, 1)
            present = [c for c in range(scored.k) if (scored.y == c).any()]
            return np.nanmean(np.stack([_auc_one(W, scored, c) for c in present]), axis=0)
        if name in REGRESSION:
            return None
    else:
        if name in REGRESSION:
            sums = {key: value[:, 0] for key, value in scored.sums(W).items()}
            total = sums["total"]
            if name == "rmse":
                return np.sqrt(_safe_div(sums["se"], total))
            if name == "mae":
                return _safe_div(sums["ae"], total)
            if name == "mape":
                return _safe_div(sums["ape"], total)
            mean = _safe_div(sums["y"], total)
            sst = sums["y2"] - total * mean**2
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(sst > 0, 1.0 - sums["se"] / np.where(sst > 0, sst, 1.0), np.nan)
        if name in CLASSIFICATION:
            return None
    if name in MODEL_LEVEL:
        return None
    raise unknown_metric(name)


def unknown_metric(name: str) -> EvaluationError:
    """The error for a metric mlcd does not know, with a suggestion."""
    import difflib

    close = difflib.get_close_matches(name, ALL_METRICS, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known metrics: {', '.join(ALL_METRICS)}"
    return EvaluationError(f"unknown metric '{name}'", hint=hint)


def point(scored: Scored, names: Sequence[str] | None = None) -> dict[str, float]:
    """Point estimates of the task's metrics (those that apply)."""
    ones = np.ones((1, scored.n))
    out = {}
    for name in names or metrics_for(scored.task):
        value = weighted(name, ones, scored) if scored.n else None
        if value is not None and math.isfinite(float(value[0])):
            out[name] = float(value[0])
    return out


def confusion(scored: Scored) -> list[list[int]]:
    """Confusion matrix: rows are true classes, columns predicted classes."""
    counts = np.bincount(scored.y * scored.k + scored.pred, minlength=scored.k * scored.k)
    return counts.reshape(scored.k, scored.k).astype(int).tolist()


def calibration(scored: Scored, bins: int = 10) -> dict[str, list[float]]:
    """Reliability curve of the positive class (binary) or of the predicted class."""
    if scored.proba is None or scored.n == 0:
        return {"predicted": [], "observed": [], "count": []}
    if scored.k == 2:
        confidence = scored.proba[:, 1]
        hit = (scored.y == 1).astype(np.float64)
    else:
        confidence = scored.proba.max(axis=1)
        hit = scored.correct
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_conf = _safe_div(np.bincount(which, confidence, bins), count.astype(float))
    observed = _safe_div(np.bincount(which, hit, bins), count.astype(float))
    keep = count > 0
    return {
        "predicted": mean_conf[keep].tolist(),
        "observed": observed[keep].tolist(),
        "count": count[keep].astype(int).tolist(),
    }


def expected_calibration_error(scored: Scored, bins: int = 10) -> float | None:
    """ECE: the count-weighted gap between confidence and accuracy over the bins."""
    curve = calibration(scored, bins)
    if not curve["count"]:
        return None
    count = np.asarray(curve["count"], dtype=float)
    gap = np.abs(np.asarray(curve["predicted"]) - np.asarray(curve["observed"]))
    return float((gap * count).sum() / count.sum())


def slice_masks(frame: Any, slices: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Row masks of declared slices (``column`` equal to ``value``, or in ``[min, max)``).

    Raises:
        EvaluationError: a slice names a column the data does not have.
    """
    masks = {}
    for name, spec in slices.items():
        column = spec.column
        if column not in frame.columns:
            raise EvaluationError(
                f"slice '{name}' uses column '{column}', which the evaluation data lacks",
                hint=f"columns: {', '.join(map(str, frame.columns))}",
            )
        series = frame[column]
        if spec.min is not None or spec.max is not None:
            mask = np.ones(len(frame), dtype=bool)
            if spec.min is not None:
                mask &= (series >= spec.min).to_numpy()
            if spec.max is not None:
                mask &= (series < spec.max).to_numpy()
        else:
            mask = (series.astype(str) == str(spec.value)).to_numpy()
            if isinstance(spec.value, bool | int | float) and not isinstance(spec.value, str):
                mask |= (series == spec.value).to_numpy()
        masks[name] = mask
    return masks


def latency(
    model: Any, frame: Any, rows: int = 200, seed: int = 0, repetitions: int = 5
) -> dict[str, float]:
    """Per-row latency of ``model.predict`` on single rows (ms), and batch throughput.

    Timed as ``mlcd serve`` runs the model (native pools pinned as a server worker pins
    them), warm-up excluded, in ``repetitions`` blocks: see :mod:`mlcd.evaluate.latency`.
    ``latency_p50_ms``/``latency_p99_ms``, the budgets gates read, are the CPU time of the
    predicting thread, which another job on a shared CI runner cannot inflate much (a model
    timed with every core on a loaded 2-core machine measured a p99 of 1.8 s against 12 ms
    on a quiet one); the wall times are reported next to them (``..._wall_ms``).
    """
    from mlcd.evaluate.latency import measure

    if len(frame) == 0:
        return {}
    (timing,) = measure([model], frame, rows=rows, repetitions=repetitions, seed=seed)
    return timing.metrics()
