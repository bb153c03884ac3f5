"""Additive sufficient statistics of classification and regression metrics.

A :class:`Tally` holds sums, not rows: two tallies merge by adding, so labels that arrive
late and in any order end in the same numbers, and a window's metrics are the merge of its
hourly tallies. Dependency-free (numpy only) so that monitor need not import evaluate.

Classification: accuracy; precision, recall and F1 of the positive class (binary) or their
macro average (more classes); with a positive-class probability also log loss, Brier score
and ROC AUC. The positive class is ``1``/``True`` when the labels are 0/1 or booleans, else
the last in sorted order (scikit-learn's ``classes_[1]``). ROC AUC is computed from
histograms of the probability in 1,000 bins (pairs within one bin count one half), so it
may differ from the exact value by at most the share of pairs sharing a bin.

Regression: MAE, MSE, RMSE, R², MAPE (over non-zero labels) and bias (mean of prediction
minus label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Task = Literal["classification", "regression"]
AUC_BINS = 1000
_EPS = 1e-15
#: Metrics where higher is better; every other known metric is an error (lower is better).
HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "r2"})


def positive_class(classes: list[str]) -> str | None:
    """The positive class of a binary problem (see the module docstring), else None."""
    found = set(classes)
    if len(found) > 2 or not found:
        return None
    for pair in (("0", "1"), ("False", "True")):
        if found <= set(pair):
            return pair[1]
    return sorted(found)[-1] if len(found) == 2 else None


@dataclass
class Tally:
    """Sums from which the metrics of a set of (label, prediction) pairs follow."""

    task: Task
    n: int = 0
    # classification: label -> prediction -> count
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    # classification with a probability, per label: count, sum -log(p), sum -log(1-p),
    # sum p², sum (1-p)², histogram of p
    proba: dict[str, list[Any]] = field(default_factory=dict)
    # regression
    sum_err: float = 0.0
    sum_abs: float = 0.0
    sum_sq: float = 0.0
    mean_y: float = 0.0
    m2_y: float = 0.0
    sum_ape: float = 0.0
    n_ape: int = 0

    def add(self, labels: Any, predictions: Any, proba: Any = None) -> None:
        """Fold in pairs (arrays or lists of equal length)."""
        if len(labels) == 0:
            return
        if self.task == "regression":
            self._add_regression(
                np.asarray(labels, np.float64), np.asarray(predictions, np.float64)
            )
            return
        import pandas as pd

        from mlcd.monitor.summary import as_categories

        frame = pd.DataFrame(
            {
                "label": pd.Series(labels).reset_index(drop=True),
                "prediction": pd.Series(predictions).reset_index(drop=True),
            }
        )
        if proba is not None:
            frame["proba"] = np.asarray(proba, dtype=np.float64)
        frame = frame.dropna(subset=["label", "prediction"])
        frame["label"] = as_categories(frame["label"])[0]
        frame["prediction"] = as_categories(frame["prediction"])[0]
        frame = frame.dropna(subset=["label", "prediction"])
        self._add_classification(frame, proba is not None)

    def _add_regression(self, y: Any, yhat: Any) -> None:
        keep = np.isfinite(y) & np.isfinite(yhat)
        y, yhat = y[keep], yhat[keep]
        if y.size == 0:
            return
        err = yhat - y
        self.sum_err += float(err.sum())
        self.sum_abs += float(np.abs(err).sum())
        self.sum_sq += float(np.square(err).sum())
        nonzero = y != 0
        self.sum_ape += float(np.abs(err[nonzero] / y[nonzero]).sum())
        self.n_ape += int(nonzero.sum())
        # Chan's merge of (count, mean, M2): order-independent up to rounding.
        n_b, mean_b = y.size, float(y.mean())
        m2_b = float(np.square(y - mean_b).sum())
        total = self.n + n_b
        delta = mean_b - self.mean_y
        self.mean_y += delta * n_b / total
        self.m2_y += m2_b + delta * delta * self.n * n_b / total
        self.n = total

    def _add_classification(self, frame: Any, with_proba: bool) -> None:
        pairs = frame.groupby(["label", "prediction"], sort=False).size()
        for (label, prediction), count in pairs.items():
            row = self.confusion.setdefault(str(label), {})
            row[str(prediction)] = row.get(str(prediction), 0) + int(count)
        self.n += len(frame)
        if not with_proba:
            return
        labels = frame["label"].tolist()
        proba = frame["proba"].to_numpy()
        p_all = np.asarray(proba, dtype=np.float64)
        label_array = np.asarray(labels, dtype=object)
        for label in set(labels):
            p = p_all[(label_array == label) & np.isfinite(p_all)]
            if p.size == 0:
                continue
            p = np.clip(p, 0.0, 1.0)
            clipped = np.clip(p, _EPS, 1 - _EPS)
            hist = np.bincount(
                np.minimum((p * AUC_BINS).astype(np.int64), AUC_BINS - 1), minlength=AUC_BINS
            )
            entry = self.proba.setdefault(label, [0, 0.0, 0.0, 0.0, 0.0, [0] * AUC_BINS])
            entry[0] += int(p.size)
            entry[1] += float(-np.log(clipped).sum())
            entry[2] += float(-np.log1p(-clipped).sum())
            entry[3] += float(np.square(p).sum())
            entry[4] += float(np.square(1 - p).sum())
            entry[5] = (np.asarray(entry[5], dtype=np.int64) + hist).tolist()

    def merge(self, other: Tally) -> Tally:
        """A new tally holding both."""
        out = Tally.from_dict(self.to_dict())
        if other.task != self.task:
            raise ValueError(f"cannot merge a {other.task} tally into a {self.task} tally")
        for label, row in other.confusion.items():
            mine = out.confusion.setdefault(label, {})
            for prediction, count in row.items():
                mine[prediction] = mine.get(prediction, 0) + count
        for label, entry in other.proba.items():
            mine_p = out.proba.setdefault(label, [0, 0.0, 0.0, 0.0, 0.0, [0] * AUC_BINS])
            for i in range(5):
                mine_p[i] += entry[i]
            mine_p[5] = (np.asarray(mine_p[5]) + np.asarray(entry[5])).tolist()
        if self.task == "regression" and other.n:
            total = out.n + other.n
            delta = other.mean_y - out.mean_y
            out.m2_y += other.m2_y + delta * delta * out.n * other.n / total
            out.mean_y += delta * other.n / total
            out.sum_err += other.sum_err
            out.sum_abs += other.sum_abs
            out.sum_sq += other.sum_sq
            out.sum_ape += other.sum_ape
            out.n_ape += other.n_ape
            out.n = total
        elif self.task == "classification":
            out.n += other.n
        return out

    # ------------------------------------------------------------ metrics
    def metrics(self) -> dict[str, float]:
        """The metrics these sums give (empty when there are no pairs)."""
        if self.n == 0:
            return {}
        if self.task == "regression":
            mse = self.sum_sq / self.n
            out = {
                "n": float(self.n),
                "mae": self.sum_abs / self.n,
                "mse": mse,
                "rmse": math.sqrt(mse),
                "bias": self.sum_err / self.n,
            }
            if self.m2_y > 0:
                out["r2"] = 1.0 - self.sum_sq / self.m2_y
            if self.n_ape:
                out["mape"] = self.sum_ape / self.n_ape
            return out
        return self._classification_metrics()

    def _classification_metrics(self) -> dict[str, float]:
        classes = sorted(set(self.confusion) | {p for r in self.confusion.values() for p in r})
        correct = sum(self.confusion.get(c, {}).get(c, 0) for c in classes)
        out = {"n": float(self.n), "accuracy": correct / self.n}
        positive = positive_class(classes)
        targets = [positive] if positive is not None else classes

        def prf(c: str) -> tuple[float, float, float]:
            tp = self.confusion.get(c, {}).get(c, 0)
            predicted = sum(r.get(c, 0) for r in self.confusion.values())
            actual = sum(self.confusion.get(c, {}).values())
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            return precision, recall, f1

        scores = np.array([prf(c) for c in targets])
        out["precision"], out["recall"], out["f1"] = (float(v) for v in scores.mean(axis=0))
        if positive is not None and self.proba:
            out.update(self._probability_metrics(positive))
        return out

    def _probability_metrics(self, positive: str) -> dict[str, float]:
        n = sum(e[0] for e in self.proba.values())
        if n == 0:
            return {}
        pos = self.proba.get(positive)
        negatives = [e for label, e in self.proba.items() if label != positive]
        loss = (pos[1] if pos else 0.0) + sum(e[2] for e in negatives)
        brier = (pos[4] if pos else 0.0) + sum(e[3] for e in negatives)
        out = {"log_loss": loss / n, "brier": brier / n}
        hist_pos = np.asarray(pos[5], dtype=np.float64) if pos else np.zeros(AUC_BINS)
        hist_neg = np.zeros(AUC_BINS)
        for entry in negatives:
            hist_neg += np.asarray(entry[5], dtype=np.float64)
        n_pos, n_neg = hist_pos.sum(), hist_neg.sum()
        if n_pos and n_neg:
            below = np.concatenate(([0.0], np.cumsum(hist_neg)[:-1]))
            out["roc_auc"] = float((hist_pos * (below + 0.5 * hist_neg)).sum() / (n_pos * n_neg))
        return out

    # ------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n": self.n,
            "confusion": {k: dict(v) for k, v in self.confusion.items()},
            "proba": {k: [*v[:5], list(v[5])] for k, v in self.proba.items()},
            "regression": [
                self.sum_err,
                self.sum_abs,
                self.sum_sq,
                self.mean_y,
                self.m2_y,
                self.sum_ape,
                self.n_ape,
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        err, absolute, sq, mean_y, m2_y, ape, n_ape = data.get("regression") or [0.0] * 6 + [0]
        return cls(
            task=data["task"],
            n=int(data["n"]),
            confusion={k: dict(v) for k, v in data.get("confusion", {}).items()},
            proba={k: [*v[:5], list(v[5])] for k, v in data.get("proba", {}).items()},
            sum_err=err,
            sum_abs=absolute,
            sum_sq=sq,
            mean_y=mean_y,
            m2_y=m2_y,
            sum_ape=ape,
            n_ape=int(n_ape),
        )


def is_worse(metric: str, value: float, threshold: float) -> bool:
    """Whether ``value`` is past ``threshold`` in the bad direction for ``metric``."""
    return value < threshold if metric in HIGHER_IS_BETTER else value > threshold
