"""``mlflow.autolog()`` / ``mlflow.sklearn.autolog()`` for scikit-learn, on mlcd runs.

Each top-level ``fit`` of a scikit-learn estimator (a ``fit`` called inside another one, by a
pipeline or a search, is not logged separately) records in the active run, or in a run of its
own named after the estimator when none is active, as MLflow does:

- params: ``get_params(deep=False)``;
- metrics on the training data: ``training_score`` and, for classifiers,
  ``training_accuracy_score``, ``training_precision_score``, ``training_recall_score``,
  ``training_f1_score`` (weighted); for regressors ``training_mean_squared_error``,
  ``training_root_mean_squared_error``, ``training_mean_absolute_error``, ``training_r2_score``;
- tags ``estimator_name`` and ``estimator_class``;
- with ``log_models`` (default), the fitted model as an mlcd package named ``model``.

Estimators are patched once per process, when autologging is first turned on.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any


def autolog(**kwargs: Any) -> None:
    """``mlflow.autolog()``: turn on autologging (scikit-learn)."""
    enable(**kwargs)


_state: dict[str, Any] = {"enabled": False, "log_models": True, "patched": False}
_depth = threading.local()


def enable(
    log_models: bool = True, disable: bool = False, silent: bool = False, **ignored: Any
) -> None:
    """Turn scikit-learn autologging on (``disable=True``: off)."""
    _state["enabled"] = not disable
    _state["log_models"] = log_models
    if not disable and not _state["patched"]:
        _patch()
        _state["patched"] = True


def _patch() -> None:
    from sklearn.utils import all_estimators

    for _name, cls in all_estimators():
        fit = cls.__dict__.get("fit") or getattr(cls, "fit", None)
        if fit is None or getattr(fit, "_mlcd_autolog", False):
            continue
        cls.fit = _wrap(fit)


def _wrap(fit: Any) -> Any:
    @functools.wraps(fit)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _state["enabled"] or getattr(_depth, "value", 0) > 0:
            return fit(self, *args, **kwargs)
        _depth.value = 1
        try:
            return _logged_fit(fit, self, args, kwargs)
        finally:
            _depth.value = 0

    wrapper._mlcd_autolog = True  # type: ignore[attr-defined]
    return wrapper


def _logged_fit(fit: Any, estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from mlcd.compat.mlflow import fluent

    own_run = fluent.active_run() is None
    if own_run:
        fluent.start_run(run_name=type(estimator).__name__)
    failed = True
    try:
        result = fit(estimator, *args, **kwargs)
        x = args[0] if args else kwargs.get("X")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        _record(estimator, x, y)
        failed = False
        return result
    finally:
        if own_run:
            fluent.end_run("FAILED" if failed else "FINISHED")


def _record(estimator: Any, x: Any, y: Any) -> None:
    from mlcd.compat.mlflow import fluent

    params = {k: _text(v) for k, v in estimator.get_params(deep=False).items()}
    if params:
        fluent.log_params(params)
    fluent.set_tags(
        {
            "estimator_name": type(estimator).__name__,
            "estimator_class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        }
    )
    if x is not None and y is not None:
        metrics = _training_metrics(estimator, x, y)
        if metrics:
            fluent.log_metrics(metrics, step=0)
    if _state["log_models"] and x is not None:
        from mlcd.compat.mlflow import sklearn

        sample = x[:5] if hasattr(x, "__getitem__") and not isinstance(x, dict) else None
        try:
            sklearn.log_model(estimator, name="model", input_example=sample)
        except Exception:  # a model mlcd cannot save must not fail the user's fit
            fluent.set_tag("mlcd.autolog.model", "not saved")


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _training_metrics(estimator: Any, x: Any, y: Any) -> dict[str, float]:
    from sklearn import base, metrics

    out: dict[str, float] = {}
    try:
        out["training_score"] = float(estimator.score(x, y))
        predicted = estimator.predict(x)
        if base.is_classifier(estimator):
            out["training_accuracy_score"] = metrics.accuracy_score(y, predicted)
            for label, fn in (
                ("training_precision_score", metrics.precision_score),
                ("training_recall_score", metrics.recall_score),
                ("training_f1_score", metrics.f1_score),
            ):
                out[label] = fn(y, predicted, average="weighted", zero_division=0)
        elif base.is_regressor(estimator):
            mse = metrics.mean_squared_error(y, predicted)
            out["training_mean_squared_error"] = mse
            out["training_root_mean_squared_error"] = math.sqrt(mse)
            out["training_mean_absolute_error"] = metrics.mean_absolute_error(y, predicted)
            out["training_r2_score"] = metrics.r2_score(y, predicted)
    except Exception:  # estimators without score/predict (transformers, clusterers)
        pass
    return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}
