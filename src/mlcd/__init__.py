"""mlcd: continuous integration and delivery for machine learning.

The public API is small and cheap to import: heavy libraries load when a function that
needs them is first called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY: dict[str, str] = {
    "MlcdError": "mlcd.errors",
    "Digest": "mlcd.digest",
    # monitor: reference profiles (registration hook) and live gauges for the server
    "compute_reference_profile": "mlcd.monitor",
    "LiveMonitor": "mlcd.monitor",
    # registry: model packages and loading (mlcd.registry imports SQLAlchemy, not sklearn)
    # save_model and log_model record the active run: they sit above tracking and registry
    "save_model": "mlcd.registration",
    "log_model": "mlcd.registration",
    "champion": "mlcd.registration",
    "load_model": "mlcd.registry",
    "register_model": "mlcd.registry",
    # tracking: the logging API (buffered; SQLAlchemy loads in the flusher thread)
    **dict.fromkeys(
        [
            "start_run",
            "end_run",
            "active_run",
            "log_metric",
            "log_metrics",
            "log_param",
            "log_params",
            "set_tag",
            "set_tags",
            "log_artifact",
            "log_figure",
            "log_table",
            "flush",
            "search_runs",
        ],
        "mlcd.tracking.api",
    ),
}

__all__ = ["__version__", "autolog", *sorted(_LAZY)]


def autolog(
    *,
    disable: bool = False,
    libraries: tuple[str, ...] | list[str] | None = None,
    log_models: bool = True,
    log_importances: bool = True,
    log_training_metrics: bool = True,
    silent: bool = False,
) -> None:
    """Record scikit-learn, XGBoost and LightGBM training without changing the training code.

    Every outermost ``fit`` (and ``xgboost.train`` / ``lightgbm.train``) from now on logs the
    estimator's params, training metrics, per-iteration eval metrics as steps, the fitted
    model as a package artifact ``model`` (signature from the training data) and feature
    importances as ``feature_importance.csv``. Inside a stage it logs to the stage's run;
    inside ``mlcd.start_run`` to that run; elsewhere to a run of its own, ended at exit.
    Libraries imported later are patched when they are imported. A logging failure is a
    warning, never an error in ``fit``. See docs/tracking.md, "Autologging".

    Args:
        disable: turn autologging off again (the original functions come back).
        libraries: a subset of ``("sklearn", "xgboost", "lightgbm")`` (default: all three).
        log_models: save the fitted model as a package.
        log_importances: store feature importances.
        log_training_metrics: score scikit-learn estimators on their training data.
        silent: no warnings and no note about the run autologging starts.

    Raises:
        UsageError: an unknown library name.
    """
    # The facade wires two siblings that never import each other: tracking patches the
    # libraries, and saves through the public mlcd.save_model, bound at the first save (a
    # stage's sitecustomize calls this in every Python the stage starts: keep it light).
    from mlcd.tracking.autolog import autolog as enable

    def save_model(*args: Any, **kwargs: Any) -> Any:
        return __getattr__("save_model")(*args, **kwargs)

    enable(
        disable=disable,
        libraries=libraries,
        log_models=log_models,
        log_importances=log_importances,
        log_training_metrics=log_training_metrics,
        silent=silent,
        save_model=save_model,
    )


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mlcd' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
