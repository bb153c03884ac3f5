"""evaluate: score the saved model on the held-out test set; write metrics and an ROC curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from common import FEATURES, TARGET, write_json
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def load(path: str):
    """The model package through mlcd (verified digests), or the plain skops file."""
    if (Path(path) / "model.skops").exists() and not (Path(path) / "model.yaml").exists():
        import skops.io

        return skops.io.load(
            Path(path) / "model.skops",
            trusted=skops.io.get_untrusted_types(file=Path(path) / "model.skops"),
        )
    from mlcd import load_model

    return load_model(path)


def main() -> None:
    test = pd.read_parquet("data/features/test.parquet")
    x, y = test[FEATURES], test[TARGET].to_numpy()
    model = load("models/churn")
    proba = np.asarray(model.predict_proba(x))
    proba = proba[:, 1] if proba.ndim == 2 else proba
    predicted = (proba >= 0.5).astype(int)
    metrics = {
        "accuracy": accuracy_score(y, predicted),
        "precision": precision_score(y, predicted, zero_division=0),
        "recall": recall_score(y, predicted),
        "f1": f1_score(y, predicted),
        "roc_auc": roc_auc_score(y, proba),
        "log_loss": log_loss(y, proba),
    }
    metrics = {k: round(float(v), 5) for k, v in metrics.items()}
    write_json("metrics/eval.json", metrics)
    fpr, tpr, _ = roc_curve(y, proba)
    Path("plots").mkdir(exist_ok=True)
    pd.DataFrame({"fpr": fpr.round(5), "tpr": tpr.round(5)}).to_csv("plots/roc.csv", index=False)
    print(f"test metrics: {metrics}")


if __name__ == "__main__":
    main()
