"""Flavors: one module per model family, picked by name or detected from the model object."""

from __future__ import annotations

from typing import Any

from mlcd.errors import ConfigError, RegistryError
from mlcd.registry.flavors.base import Flavor, Predictor
from mlcd.registry.flavors.lightgbm import LightGBMFlavor
from mlcd.registry.flavors.onnx import OnnxFlavor
from mlcd.registry.flavors.python import PythonFlavor
from mlcd.registry.flavors.sklearn import SklearnFlavor
from mlcd.registry.flavors.xgboost import XGBoostFlavor

__all__ = ["FLAVORS", "Flavor", "Predictor", "detect_flavor", "get_flavor"]

#: Detection order matters: XGBoost and LightGBM estimators are scikit-learn estimators too,
#: and the generic Python flavor accepts anything with ``predict``.
FLAVORS: dict[str, Flavor] = {
    flavor.name: flavor
    for flavor in (XGBoostFlavor(), LightGBMFlavor(), OnnxFlavor(), SklearnFlavor(), PythonFlavor())
}
#: The pip extra that brings each flavor's library.
EXTRAS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnx"}


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``.

    Raises:
        RegistryError: no such flavor.
    """
    try:
        return FLAVORS[name]
    except KeyError:
        raise RegistryError(
            f"unknown model flavor {name!r}",
            hint=f"use one of: {', '.join(FLAVORS)}",
        ) from None


def detect_flavor(model: Any) -> Flavor:
    """The first flavor that recognises ``model``.

    Raises:
        RegistryError: nothing recognises it (it has no ``predict`` method).
    """
    for flavor in FLAVORS.values():
        if flavor.detect(model):
            return flavor
    raise RegistryError(
        f"cannot tell which flavor a {type(model).__module__}.{type(model).__name__} is",
        hint=f"pass flavor= one of {', '.join(FLAVORS)}; a custom model needs a predict method",
    )


def missing_library(flavor: str, exc: ImportError) -> ConfigError:
    """The error for a flavor whose library is not installed."""
    extra = EXTRAS.get(flavor)
    install = f"pip install 'mlcd[{extra}]'" if extra else f"pip install {exc.name}"
    return ConfigError(
        f"the {flavor} flavor needs {exc.name or 'a library'} installed", hint=install
    )
