"""MLflow's everyday tracking API, recorded into mlcd: ``import mlcd.compat.mlflow as mlflow``.

Covered: ``set_experiment``, ``start_run`` (a context manager; ``nested=True`` for child
runs), ``end_run``, ``active_run``, ``log_param(s)``, ``log_metric(s)`` (step and timestamp),
``set_tag(s)``, ``log_artifact(s)``, ``log_dict``, ``log_text``, ``log_figure``, ``autolog``
(scikit-learn), ``set_tracking_uri`` (accepted, see ``fluent``), ``mlflow.sklearn``
(``log_model``, ``save_model``, ``load_model``, ``autolog``), ``mlflow.pyfunc.load_model``
and ``mlflow.models.infer_signature``. Anything else raises ``UnsupportedCall`` naming the
call, when it is looked up.
"""

from __future__ import annotations

import importlib
from typing import Any

from mlcd.compat.errors import UnsupportedCall
from mlcd.compat.mlflow.autolog import autolog
from mlcd.compat.mlflow.fluent import (
    ActiveRun,
    Experiment,
    active_run,
    end_run,
    flush,
    get_experiment_by_name,
    get_tracking_uri,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)

__all__ = [
    "ActiveRun",
    "Experiment",
    "UnsupportedCall",
    "active_run",
    "autolog",
    "end_run",
    "flush",
    "get_experiment_by_name",
    "get_tracking_uri",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "models",
    "pyfunc",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "sklearn",
    "start_run",
]

__version__ = "3.0.0+mlcd"
#: Submodules loaded on first access (``mlflow.sklearn.log_model``).
_SUBMODULES = ("sklearn", "pyfunc", "models")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedCall(f"mlflow.{name}")


def __dir__() -> list[str]:
    return sorted(__all__)
