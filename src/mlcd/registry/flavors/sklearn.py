"""scikit-learn models, saved with skops (no pickle) unless the user asks for pickle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mlcd.errors import UnsafeModel, UsageError
from mlcd.registry.flavors.base import Flavor, Predictor, module_of, refuse_pickle
from mlcd.registry.flavors.skops_review import review
from mlcd.registry.flavors.tree_check import check_trees

SKOPS_FILE = "model.skops"
PICKLE_FILE = "model.pkl"


class SklearnFlavor(Flavor):
    """scikit-learn estimators and pipelines."""

    name = "sklearn"
    libraries: ClassVar[tuple[str, ...]] = ("scikit-learn", "skops", "numpy", "scipy")

    def detect(self, model: Any) -> bool:
        if module_of(model) == "sklearn":
            return True
        # Estimators from other packages that follow the scikit-learn API.
        try:
            from sklearn.base import BaseEstimator
        except ImportError:
            return False
        return isinstance(model, BaseEstimator)

    def save(self, model: Any, folder: Path, trusted: bool) -> dict[str, Any]:
        return self.save_as(model, folder, trusted, "skops")

    def save_as(self, model: Any, folder: Path, trusted: bool, fmt: str) -> dict[str, Any]:
        """Save in ``fmt`` (``skops`` or ``pickle``, the latter only when trusted)."""
        if fmt == "pickle":
            if not trusted:
                raise UsageError(
                    "saving a scikit-learn model as pickle needs trusted=True",
                    hint="drop serialization='pickle' to use skops (safe), or pass trusted=True",
                )
            import pickle

            with open(folder / PICKLE_FILE, "wb") as out:
                pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
            return {"file": PICKLE_FILE, "format": "pickle"}
        if fmt != "skops":
            raise UsageError(f"unknown serialization {fmt!r} for sklearn: use 'skops' or 'pickle'")
        import skops.io as sio

        sio.dump(model, folder / SKOPS_FILE)
        return {"file": SKOPS_FILE, "format": "skops"}

    def load(self, folder: Path, options: Mapping[str, Any], trusted: bool) -> Predictor:
        fmt = options.get("format", "skops")
        path = folder / str(options.get("file", SKOPS_FILE))
        if fmt == "pickle":
            if not trusted:
                raise refuse_pickle(folder, "a scikit-learn model")
            import pickle

            with open(path, "rb") as handle:
                model = pickle.load(handle)
        elif fmt == "skops":
            import skops.io as sio

            if not trusted:
                refused = review(path)
                if refused:
                    raise UnsafeModel(
                        f"{path.name} in {folder} holds what mlcd does not load without "
                        "trust (it could run code): " + ", ".join(refused),
                        hint="load it only if you trust where it came from: "
                        "load_model(..., trusted=True) or the CLI's --trust flag",
                    )
            model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
            check_trees(model, f"{path.name} in {folder}")
        else:
            raise UnsafeModel(f"unknown sklearn format {fmt!r} in {folder}/model.yaml")
        return Predictor(model, self.classes(model))
