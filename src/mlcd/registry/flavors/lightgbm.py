"""LightGBM models in LightGBM's text format (no pickle)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mlcd.registry.flavors.base import Flavor, Predictor, module_of

MODEL_FILE = "model.txt"


class _LightGBMPredictor(Predictor):
    """A ``lightgbm.Booster``; class labels come from the saved options."""

    def __init__(self, raw: Any, classes: list[Any] | None, objective: str) -> None:
        super().__init__(raw, classes)
        self.objective = objective

    def predict_proba(self, X: Any) -> Any | None:
        import numpy as np

        if self.classes is None:
            return None
        scores = np.asarray(self.raw.predict(X))
        if scores.ndim == 1:  # binary: the probability of the second class
            return np.column_stack([1.0 - scores, scores])
        return scores

    def predict(self, X: Any) -> Any:
        import numpy as np

        proba = self.predict_proba(X)
        if proba is None or self.classes is None:
            return np.asarray(self.raw.predict(X))
        return np.asarray(self.classes, dtype=object if _texts(self.classes) else None)[
            proba.argmax(axis=1)
        ]


def _texts(values: list[Any]) -> bool:
    return any(isinstance(v, str) for v in values)


class LightGBMFlavor(Flavor):
    """``lightgbm`` scikit-learn estimators and bare boosters."""

    name = "lightgbm"
    libraries: ClassVar[tuple[str, ...]] = ("lightgbm", "numpy")

    def detect(self, model: Any) -> bool:
        return module_of(model) == "lightgbm"

    def save(self, model: Any, folder: Path, trusted: bool) -> dict[str, Any]:
        booster = getattr(model, "booster_", model)
        booster.save_model(str(folder / MODEL_FILE))
        return {
            "file": MODEL_FILE,
            "estimator": type(model).__name__,
            "classes": self.classes(model),
        }

    def load(self, folder: Path, options: Mapping[str, Any], trusted: bool) -> Predictor:
        import lightgbm

        booster = lightgbm.Booster(model_file=str(folder / str(options.get("file", MODEL_FILE))))
        classes = options.get("classes")
        objective = str(booster.dump_model().get("objective", ""))
        return _LightGBMPredictor(booster, None if classes is None else list(classes), objective)
