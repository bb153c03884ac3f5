"""Autologging for scikit-learn, XGBoost and LightGBM (``mlcd.autolog()``, ``autolog: true``).

One module per library patches what trains a model (``fit`` of estimator classes, ``train``
functions); ``core`` records params, metrics, the model package and feature importances on the
run; ``hooks`` patches a library when it is imported, so turning autologging on imports none of
them. A stage with ``autolog: true`` gets ``MLCD_AUTOLOG=1`` and, from ``autolog_env``, the
folder of ``site/sitecustomize.py`` first on ``PYTHONPATH``: any Python the stage starts turns
autologging on before the user's code runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from mlcd.errors import UsageError
from mlcd.tracking.autolog import core, hooks

#: The folder put first on ``PYTHONPATH`` of an autologged stage (a string: no pathlib
#: import in every Python the stage starts).
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
#: Library -> module that patches it.
LIBRARIES = {
    "sklearn": "mlcd.tracking.autolog.sklearn",
    "xgboost": "mlcd.tracking.autolog.xgboost",
    "lightgbm": "mlcd.tracking.autolog.lightgbm",
}
_TRUE = ("1", "true", "yes", "on")
_enabled: frozenset[str] = frozenset()


def autolog(
    *,
    disable: bool = False,
    libraries: tuple[str, ...] | list[str] | None = None,
    log_models: bool = True,
    log_importances: bool = True,
    log_training_metrics: bool = True,
    silent: bool = False,
    save_model: Callable[..., Any] | None = None,
) -> None:
    """Record every scikit-learn, XGBoost and LightGBM training of this process.

    See ``mlcd.autolog`` (which passes the registry's ``save_model`` as ``save_model``).

    Raises:
        UsageError: an unknown library name.
    """
    global _enabled
    if disable:
        core.settings = None
        hooks.unwatch()
        hooks.unpatch_all()
        _enabled = frozenset()
        return
    chosen = tuple(LIBRARIES) if libraries is None else tuple(libraries)
    unknown = [name for name in chosen if name not in LIBRARIES]
    if unknown:
        raise UsageError(
            f"autolog: unknown librar{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}",
            hint=f"choose among {', '.join(LIBRARIES)}",
        )
    core.settings = core.Settings(log_models, log_importances, log_training_metrics, silent)
    if save_model is not None:
        core.saver = save_model
    _enabled = frozenset(chosen)
    # sklearn's hook also serves XGBoost and LightGBM's wrappers' inner scikit-learn fits
    hooks.watch(frozenset(_enabled), _imported)
    import sys

    for name, module in list(sys.modules.items()):
        if module is not None and name.partition(".")[0] in _enabled:
            _imported(module)


def _imported(module: ModuleType) -> None:
    """A watched module finished importing: let its library's patcher look at it."""
    import importlib

    library = module.__name__.partition(".")[0]
    if library not in _enabled or core.settings is None:
        return
    try:
        patcher = importlib.import_module(LIBRARIES[library])
        patcher.on_module(module)
    except Exception as exc:  # a library version we do not know: never break its import
        core.warn(f"could not patch {module.__name__} ({type(exc).__name__}: {exc})")


def enabled() -> bool:
    """Whether autologging is on in this process."""
    return core.settings is not None


def requested(env: Mapping[str, str]) -> bool:
    """Whether ``MLCD_AUTOLOG`` in ``env`` asks for autologging."""
    return env.get("MLCD_AUTOLOG", "").strip().lower() in _TRUE


def autolog_env(env: Mapping[str, str]) -> dict[str, str]:
    """Variables to add to a stage's environment ``env``: ``PYTHONPATH`` with ``SITE_DIR``
    first when ``MLCD_AUTOLOG`` asks for autologging, else nothing."""
    if not requested(env):
        return {}
    existing = env.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (SITE_DIR, existing) if p)}
