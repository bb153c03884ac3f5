"""scikit-learn models, saved with skops (no pickle) unless the user asks for pickle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mlcd.errors import UnsafeModel, UsageError
from mlcd.registry.flavors.base import Flavor, Predictor, module_of, refuse_pickle

SKOPS_FILE = "model.skops"
PICKLE_FILE = "model.pkl"

# skops refuses by default every type it has not vetted, including scikit-learn's own tree
# and histogram-boosting internals. Types from these libraries are data containers and
# functions that skops rebuilds without running them, so they are accepted; anything else
# (a user's class, another library) needs explicit trust.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
_TRUSTED_TYPES = frozenset(
    {"functools.partial", "builtins.slice", "collections.OrderedDict", "collections.defaultdict"}
)


def _is_trusted_type(name: str) -> bool:
    return name in _TRUSTED_TYPES or name.startswith(_TRUSTED_PREFIXES)


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

            untrusted = sio.get_untrusted_types(file=path)
            refused = [t for t in untrusted if not _is_trusted_type(t)]
            if refused and not trusted:
                raise UnsafeModel(
                    f"{path.name} in {folder} needs types that are not known to be safe: "
                    + ", ".join(refused),
                    hint="load it only if you trust where it came from: "
                    "load_model(..., trusted=True) or the CLI's --trust flag",
                )
            model = sio.load(path, trusted=untrusted)
        else:
            raise UnsafeModel(f"unknown sklearn format {fmt!r} in {folder}/model.yaml")
        return Predictor(model, self.classes(model))
