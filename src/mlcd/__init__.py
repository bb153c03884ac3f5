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

__all__ = ["__version__", *sorted(_LAZY)]


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
