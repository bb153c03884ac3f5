"""Stage ``evaluate``: ROC AUC and average precision on both splits, a ROC curve and importances.

Writes ``eval/metrics.json`` (``{"roc_auc": {"train": .., "test": ..}, "avg_prec": {..}}``),
``eval/plots/roc.csv`` (the test split's curve) and ``eval/importance.csv``.
"""

import csv
import json
import os
import pickle
import sys

from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python src/evaluate.py model.pkl features-dir")
    with open(sys.argv[1], "rb") as f:
        forest = pickle.load(f)
    metrics = {"roc_auc": {}, "avg_prec": {}}
    os.makedirs("eval/plots", exist_ok=True)
    for split in ("train", "test"):
        with open(os.path.join(sys.argv[2], f"{split}.pkl"), "rb") as f:
            matrix, names = pickle.load(f)
        labels = matrix[:, 1].toarray().ravel().astype(int)
        scores = forest.predict_proba(matrix[:, 2:])[:, 1]
        metrics["roc_auc"][split] = float(roc_auc_score(labels, scores))
        metrics["avg_prec"][split] = float(average_precision_score(labels, scores))
        if split == "test":
            fpr, tpr, _ = roc_curve(labels, scores)
            with open("eval/plots/roc.csv", "w", newline="") as f:
                csv.writer(f).writerows([("fpr", "tpr"), *zip(fpr, tpr, strict=True)])
    with open("eval/metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    ranked = sorted(zip(names, forest.feature_importances_, strict=True), key=lambda p: -p[1])
    with open("eval/importance.csv", "w", newline="") as f:
        csv.writer(f).writerows([("feature", "importance"), *ranked])


if __name__ == "__main__":
    main()
