"""Small real datasets and models shared by the registry and evaluation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def churn_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A churn-like table: numeric, categorical and a binary label with real signal."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 70, n),
            "spend": rng.normal(50, 20, n),
            "plan": rng.choice(["a", "b", "c"], n),
        }
    )
    logit = 0.06 * (frame.age - 40) - 0.04 * (frame.spend - 50) + (frame.plan == "a") * 1.0
    frame["churned"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def split(frame: pd.DataFrame, root: Path) -> tuple[Path, Path]:
    """Write train and test Parquet files under ``root/data``."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    cut = int(len(frame) * 0.6)
    frame.iloc[:cut].to_parquet(data / "train.parquet")
    frame.iloc[cut:].reset_index(drop=True).to_parquet(data / "test.parquet")
    return data / "train.parquet", data / "test.parquet"


def pipeline(kind: str = "good") -> Any:
    """An untrained scikit-learn pipeline: a good logistic regression or a weak stump."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        (StandardScaler(), ["age", "spend"]),
    )
    estimator = (
        LogisticRegression(max_iter=500)
        if kind == "good"
        else DecisionTreeClassifier(max_depth=1, random_state=0)
    )
    return make_pipeline(encode, estimator)


def trained(frame: pd.DataFrame, kind: str = "good") -> Any:
    """A pipeline fitted on ``frame``."""
    X, y = frame.drop(columns="churned"), frame["churned"]
    return pipeline(kind).fit(X, y)


def save_churn_model(
    path: Path, frame: pd.DataFrame, kind: str = "good", training_data: list[Path] | None = None
) -> Any:
    """Train and save a churn model package; returns the fitted model."""
    from mlcd.registry import save_model

    model = trained(frame, kind)
    save_model(
        model,
        path,
        sample_input=frame.drop(columns="churned").head(200),
        training_data=training_data or [],
    )
    return model
