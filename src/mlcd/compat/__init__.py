"""Compatibility layers: keep another tool's client code running on mlcd.

``import mlcd.compat.mlflow as mlflow`` gives the everyday MLflow tracking calls, recorded
into mlcd. ``install_mlflow_shim()`` makes a plain ``import mlflow`` (and ``mlflow.sklearn``,
``mlflow.pyfunc``, ``mlflow.models``) resolve to it, for code that cannot be edited.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["install_mlflow_shim", "uninstall_mlflow_shim"]

#: The MLflow module names the shim answers for.
SHIMMED = ("mlflow", "mlflow.sklearn", "mlflow.pyfunc", "mlflow.models")
_saved: dict[str, ModuleType | None] = {}


def install_mlflow_shim() -> ModuleType:
    """Make ``import mlflow`` load ``mlcd.compat.mlflow`` from now on, in this process.

    Modules that already imported the real mlflow keep it; call this before them.

    Returns:
        The shim module (what ``import mlflow`` now gives).
    """
    import importlib

    for name in SHIMMED:
        target = "mlcd.compat." + name
        if name not in _saved:
            _saved[name] = sys.modules.get(name)
        sys.modules[name] = importlib.import_module(target)
    return sys.modules["mlflow"]


def uninstall_mlflow_shim() -> None:
    """Undo :func:`install_mlflow_shim` (the real mlflow, if it was imported, comes back)."""
    for name in SHIMMED:
        if name not in _saved:
            continue
        previous = _saved.pop(name)
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
