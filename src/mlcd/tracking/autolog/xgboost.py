"""XGBoost: ``xgboost.train`` (under each name it is bound to) and the scikit-learn wrappers.

``train`` gets one more callback that logs each iteration's eval metrics as steps of
``<data>-<metric>`` (``validation_0-logloss``); a wrapper's ``fit`` logs through the ``train``
it calls, else (an older binding) from ``evals_result()`` afterwards. Also logged: params (the
``params`` dict with ``num_boost_round``, or ``get_params()``), ``best_iteration`` after early
stopping, importances by gain, weight and cover, and the booster or estimator as a package whose
signature comes from the training data (a ``DMatrix``'s first rows, missing values as NaN).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from mlcd.tracking.autolog import core, hooks
from mlcd.tracking.autolog.sklearn import patch_classes

_callback_class: Any = None


def _callback(fit: core.Fit) -> Any:
    """An ``xgboost.callback.TrainingCallback`` that logs every iteration to ``fit``'s run."""
    global _callback_class
    if _callback_class is None:
        from xgboost.callback import TrainingCallback

        class _Log(TrainingCallback):  # type: ignore[misc]
            def __init__(self, fit: core.Fit) -> None:
                super().__init__()
                self.fit = fit

            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                values = {
                    f"{data}-{metric}": core._first(series[-1])
                    for data, metrics in evals_log.items()
                    for metric, series in metrics.items()
                    if series
                }
                if values:
                    core.safely("log an iteration", core.log_metrics, self.fit, values, epoch)
                return False

        _callback_class = _Log
    fit.steps_logged = True
    return _callback_class(fit)


def _with_callback(
    signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any], fit: core.Fit
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    bound = signature.bind(*args, **kwargs)
    bound.arguments["callbacks"] = [*(bound.arguments.get("callbacks") or ()), _callback(fit)]
    return bound.args, bound.kwargs


def dmatrix_sample(data: Any) -> Any:
    """The first rows of a ``DMatrix`` as a DataFrame (its feature names) or an array."""
    import numpy as np

    matrix = data.get_data()[: core.MAX_SPARSE_ROWS].tocoo()
    dense = np.full(matrix.shape, np.nan)
    dense[matrix.row, matrix.col] = matrix.data
    names = data.feature_names
    if names:
        import pandas as pd

        return pd.DataFrame(dense, columns=list(names))
    return dense


def importances(fit: core.Fit, booster: Any) -> None:
    """Gain, weight and cover per feature as ``feature_importance.csv``."""
    names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
    columns = {}
    for kind in ("gain", "weight", "cover"):
        scores = booster.get_score(importance_type=kind)
        columns[kind] = [float(scores.get(name, 0.0)) for name in names]
    core.log_importances(fit, list(names), columns)


def _best_iteration(fit: core.Fit, booster: Any) -> None:
    best = booster.attr("best_iteration")
    if best is not None:
        core.log_metrics(fit, {"best_iteration": int(best)})


def wrap_train(original: Callable[..., Any]) -> Callable[..., Any]:
    """``xgboost.train`` that logs when it is the outermost autologged call."""
    signature = inspect.signature(original)

    def before(fit: core.Fit, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        core.begin(fit)
        fit.session.set_tags({"estimator_name": "Booster", "estimator_class": "xgboost.Booster"})
        extra = {
            k: bound.arguments[k]
            for k in ("num_boost_round", "early_stopping_rounds", "maximize")
            if bound.arguments.get(k) is not None
        }
        core.log_params(fit, {**dict(bound.arguments.get("params") or {}), **extra})

    def after(fit: core.Fit, booster: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        dtrain = signature.bind(*args, **kwargs).arguments.get("dtrain")
        _best_iteration(fit, booster)
        core.safely("log the feature importances", importances, fit, booster)
        sample = core.safely("read the training data", dmatrix_sample, dtrain)
        core.safely("save the model", core.log_model, fit, booster, sample)

    @functools.wraps(original)
    def train(*args: Any, **kwargs: Any) -> Any:
        with core.guarded("xgboost") as call:
            if call is None:
                outer = core.enclosing("xgboost")
                if outer is not None:
                    args, kwargs = core.safely(
                        "add the metrics callback", _with_callback, signature, args, kwargs, outer
                    ) or (args, kwargs)
                return original(*args, **kwargs)
            core.safely("start logging the training", before, call, args, kwargs)
            given = args, kwargs
            if call.session is not None:
                args, kwargs = core.safely(
                    "add the metrics callback", _with_callback, signature, args, kwargs, call
                ) or (args, kwargs)
            booster = original(*args, **kwargs)
            if call.session is not None:
                core.safely("log the training", after, call, booster, *given)
            return booster

    return train


class XGBoostHandler:
    """Logging around ``XGBModel.fit`` and its subclasses."""

    library = "xgboost"
    accepts_iterations = True

    def before(
        self, fit: core.Fit, estimator: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        core.begin(fit, estimator)
        core.log_params(fit, estimator.get_params())

    def after(
        self, fit: core.Fit, estimator: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        if not fit.steps_logged:
            history = core.safely("read evals_result()", estimator.evals_result)
            if history:
                core.log_eval_history(fit, history)
        booster = estimator.get_booster()
        _best_iteration(fit, booster)
        core.safely("log the feature importances", importances, fit, booster)
        X = core.fit_arguments(args, kwargs)[0]
        core.safely("save the model", core.log_model, fit, estimator, X)


HANDLER = XGBoostHandler()


def on_module(module: ModuleType) -> None:
    """Patch XGBoost once the ``xgboost`` package has finished importing."""
    if module.__name__ != "xgboost":
        return
    import xgboost.sklearn
    import xgboost.training

    original = xgboost.training.train
    if getattr(original, hooks.MARK, False):
        return
    wrapped = wrap_train(original)
    for owner in (xgboost, xgboost.training, xgboost.sklearn):
        if getattr(owner, "train", None) is original:
            hooks.patch(owner, "train", wrapped)
    patch_classes(xgboost.sklearn, xgboost.sklearn.XGBModel, HANDLER, prefix="XGB")
