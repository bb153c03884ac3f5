"""The flavor port: how one kind of model is saved in its native format and loaded back."""

from __future__ import annotations

import functools
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from mlcd.errors import UnsafeModel


class Predictor:
    """A loaded native model behind one small interface."""

    def __init__(self, raw: Any, classes: Sequence[Any] | None = None) -> None:
        self.raw = raw
        self.classes = None if classes is None else list(classes)

    def predict(self, X: Any) -> Any:
        """Predicted labels (classification) or values (regression)."""
        return self.raw.predict(X)

    def predict_proba(self, X: Any) -> Any | None:
        """Class probabilities, columns in ``classes`` order; None when not supported."""
        method = getattr(self.raw, "predict_proba", None)
        return None if method is None else method(X)


class Flavor(ABC):
    """Save and load one family of models; ``libraries`` are the packages whose versions count."""

    name: ClassVar[str]
    libraries: ClassVar[tuple[str, ...]] = ()
    #: Whether the native format can run code when loaded (only with explicit trust).
    uses_pickle: ClassVar[bool] = False

    @abstractmethod
    def detect(self, model: Any) -> bool:
        """Whether ``model`` belongs to this flavor (checked without importing its library)."""

    @abstractmethod
    def save(self, model: Any, folder: Path, trusted: bool) -> dict[str, Any]:
        """Write ``model`` into ``folder``; returns the options that ``load`` needs (``file``...)."""

    @abstractmethod
    def load(self, folder: Path, options: Mapping[str, Any], trusted: bool) -> Predictor:
        """Load the model saved in ``folder``.

        Raises:
            UnsafeModel: loading would need trust the caller did not give.
        """

    def classes(self, model: Any) -> list[Any] | None:
        """The class labels of a classifier, None for a regressor."""
        classes = getattr(model, "classes_", None)
        return None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]

    def versions(self) -> dict[str, str]:
        """Installed versions of the flavor's libraries."""
        found = {}
        for library in self.libraries:
            version = installed_version(library)
            if version is not None:
                found[library] = version
        return found


@functools.cache
def installed_version(library: str) -> str | None:
    """The installed version of a distribution (cached: reading metadata costs milliseconds)."""
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def module_of(model: Any) -> str:
    """The top-level module that defines ``model``'s class (``sklearn``, ``xgboost``...)."""
    return type(model).__module__.split(".", 1)[0]


def refuse_pickle(folder: Path, what: str) -> UnsafeModel:
    """The error for a pickle that was not marked trusted."""
    return UnsafeModel(
        f"{folder} holds {what} in pickle format, which can run arbitrary code when loaded",
        hint="load it only if you trust where it came from: load_model(..., trusted=True) "
        "or the CLI's --trust flag",
    )
