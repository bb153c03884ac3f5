"""train: fit a scikit-learn pipeline and save it as a model package folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from common import CATEGORICAL, FEATURES, NUMERIC, TARGET, params, write_json
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build(p: dict) -> Pipeline:
    """The model the params ask for, behind one-hot encoding and scaling."""
    t = p["train"]
    if t["model"] == "gradient_boosting":
        estimator = HistGradientBoostingClassifier(
            learning_rate=t["learning_rate"],
            max_iter=t["max_iter"],
            max_depth=t["max_depth"],
            random_state=p["seed"],
        )
    elif t["model"] == "logistic_regression":
        estimator = LogisticRegression(C=t["C"], max_iter=1000)
    else:
        raise SystemExit(
            f"params.yaml: train.model must be gradient_boosting or logistic_regression, not {t['model']!r}"
        )
    columns = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                CATEGORICAL,
            ),
        ]
    )
    return Pipeline([("columns", columns), ("model", estimator)])


def save(model: Pipeline, sample: pd.DataFrame, path: str) -> None:
    """Save as an mlcd model package (signature inferred from a sample of the inputs)."""
    try:
        from mlcd import save_model
    except ImportError:  # an mlcd without the registry: a plain skops file will do
        save_model = None
    if save_model is not None:
        save_model(model, path, sample_input=sample, training_data=["data/features/train.parquet"])
        return
    import skops.io

    Path(path).mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, Path(path) / "model.skops")


def main() -> None:
    p = params()
    train = pd.read_parquet("data/features/train.parquet")
    x, y = train[FEATURES], train[TARGET]
    weights = Path("data/features/weights.parquet")
    fit = (
        {"model__sample_weight": pd.read_parquet(weights)["weight"].to_numpy()}
        if weights.exists()
        else {}
    )
    model = build(p).fit(x, y, **fit)
    proba = model.predict_proba(x)[:, 1]
    save(model, x.head(200), "models/churn")
    metrics = {
        "train_accuracy": round(float(accuracy_score(y, model.predict(x))), 5),
        "train_roc_auc": round(float(roc_auc_score(y, proba)), 5),
        "train_rows": len(train),
    }
    write_json("metrics/train.json", metrics)
    print(f"trained {p['train']['model']}: {metrics}")


if __name__ == "__main__":
    main()
