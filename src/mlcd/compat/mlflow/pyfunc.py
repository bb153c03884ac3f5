"""``mlflow.pyfunc.load_model``: a model with ``predict``, for the flavors mlcd loads."""

from __future__ import annotations

import os
from typing import Any

from mlcd.compat.errors import UnsupportedCall
from mlcd.compat.mlflow.models import load

__all__ = ["PyFuncModel", "load_model"]


class PyFuncModel:
    """MLflow's generic model: ``predict(data)`` through the mlcd model's flavor."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.metadata = {"flavor": model.flavor, "signature": model.signature.to_dict()}

    def predict(self, data: Any, params: Any = None) -> Any:
        """Predictions for the rows of ``data`` (DataFrame, array or dict of columns)."""
        return self._model.predict(data)

    def unwrap_python_model(self) -> Any:
        """The native model object."""
        return self._model.raw

    def __repr__(self) -> str:
        return f"PyFuncModel({self._model!r})"


def load_model(
    model_uri: str | os.PathLike[str], suppress_warnings: bool = False, dst_path: Any = None
) -> PyFuncModel:
    """Load a logged or registered model (sklearn, XGBoost, LightGBM, ONNX packages)."""
    return PyFuncModel(load(model_uri))


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedCall(f"mlflow.pyfunc.{name}")
