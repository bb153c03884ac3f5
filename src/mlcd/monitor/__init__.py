"""Monitoring: drift, data quality and live performance of a model in production.

Modules: ``stats`` (two-sample statistics equal to scipy's), ``summary`` (chunked column
reduction), ``profile`` (the stored reference profile), ``window`` (the prediction log and
files), ``current`` (a window against the reference), ``drift``, ``quality``, ``metrics`` and
``performance`` (labels joined incrementally), ``report`` (HTML/JSON/Markdown), ``alerts``
(webhooks, log, events), ``live`` (rolling gauges for the server) and ``run`` (one pass).
Names below resolve on first use so that importing one module does not load them all.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "compute_reference_profile": "mlcd.monitor.profile",
    "build_profile": "mlcd.monitor.profile",
    "load_profile": "mlcd.monitor.profile",
    "ReferenceProfile": "mlcd.monitor.profile",
    "DriftSettings": "mlcd.monitor.drift",
    "DriftReport": "mlcd.monitor.drift",
    "FeatureDrift": "mlcd.monitor.drift",
    "detect_drift": "mlcd.monitor.drift",
    "summarise_window": "mlcd.monitor.current",
    "assess_quality": "mlcd.monitor.quality",
    "LiveMonitor": "mlcd.monitor.live",
    "LiveSnapshot": "mlcd.monitor.live",
    "MonitorReport": "mlcd.monitor.run",
    "run_monitor": "mlcd.monitor.run",
    "update_performance": "mlcd.monitor.performance",
    "raise_alert": "mlcd.monitor.alerts",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mlcd.monitor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
