"""XGBoost models in XGBoost's own UBJSON format (no pickle)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mlcd.errors import UnsafeModel
from mlcd.registry.flavors.base import Flavor, Predictor, module_of

MODEL_FILE = "model.ubj"
_ESTIMATORS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")


class _BoosterPredictor(Predictor):
    """A bare ``xgboost.Booster``: rows go through a DMatrix."""

    def predict(self, X: Any) -> Any:
        import xgboost

        return self.raw.predict(xgboost.DMatrix(X))

    def predict_proba(self, X: Any) -> Any | None:
        return None


class XGBoostFlavor(Flavor):
    """``xgboost`` scikit-learn estimators and bare boosters."""

    name = "xgboost"
    libraries: ClassVar[tuple[str, ...]] = ("xgboost", "numpy")

    def detect(self, model: Any) -> bool:
        return module_of(model) == "xgboost"

    def save(self, model: Any, folder: Path, trusted: bool) -> dict[str, Any]:
        model.save_model(str(folder / MODEL_FILE))
        return {"file": MODEL_FILE, "estimator": type(model).__name__}

    def load(self, folder: Path, options: Mapping[str, Any], trusted: bool) -> Predictor:
        import xgboost

        estimator = str(options.get("estimator", "Booster"))
        path = str(folder / str(options.get("file", MODEL_FILE)))
        if estimator == "Booster":
            return _BoosterPredictor(xgboost.Booster(model_file=path))
        if estimator not in _ESTIMATORS:
            raise UnsafeModel(
                f"unknown XGBoost estimator {estimator!r} in {folder}/model.yaml",
                hint=f"expected one of: Booster, {', '.join(_ESTIMATORS)}",
            )
        model = getattr(xgboost, estimator)()
        model.load_model(path)
        return Predictor(model, self.classes(model))
