"""Any Python object with a ``predict`` method, pickled: only when the user trusts it."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mlcd.errors import UsageError
from mlcd.registry.flavors.base import Flavor, Predictor, refuse_pickle

MODEL_FILE = "model.pkl"


class PythonFlavor(Flavor):
    """The fallback: a pickled object with ``predict`` (and optionally ``predict_proba``)."""

    name = "python"
    libraries: ClassVar[tuple[str, ...]] = ("numpy", "pandas")
    uses_pickle = True

    def detect(self, model: Any) -> bool:
        return callable(getattr(model, "predict", None))

    def save(self, model: Any, folder: Path, trusted: bool) -> dict[str, Any]:
        if not trusted:
            raise UsageError(
                f"a {type(model).__name__} can only be saved as a pickle, and pickles run code "
                "when loaded",
                hint="if you trust this model, call save_model(..., trusted=True); loading it "
                "will need trusted=True too",
            )
        with open(folder / MODEL_FILE, "wb") as out:
            pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
        return {"file": MODEL_FILE, "format": "pickle", "class": type(model).__qualname__}

    def load(self, folder: Path, options: Mapping[str, Any], trusted: bool) -> Predictor:
        if not trusted:
            raise refuse_pickle(folder, f"a Python model ({options.get('class', 'unknown')})")
        with open(folder / str(options.get("file", MODEL_FILE)), "rb") as handle:
            model = pickle.load(handle)
        classes = getattr(model, "classes_", None) or getattr(model, "classes", None)
        return Predictor(model, None if classes is None else list(classes))
