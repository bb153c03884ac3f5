"""LightGBM: ``lightgbm.train`` (under each name it is bound to) and the scikit-learn wrappers.

``train`` gets one more callback (ordered before early stopping, so the last iteration is
logged too) that logs each iteration's eval results as steps of ``<data>-<metric>``
(``valid_0-binary_logloss``); a wrapper's ``fit`` logs through the ``train`` it calls, else from
``evals_result_`` afterwards. Also logged: params, ``best_iteration`` after early stopping,
importances by gain and split count, and the booster or estimator as a package whose signature
comes from the training data (``Dataset.data``, read before LightGBM frees it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from mlcd.tracking.autolog import core, hooks
from mlcd.tracking.autolog.sklearn import patch_classes

#: LightGBM runs callbacks by ``order``: record_evaluation is 20, early_stopping 30 (it raises
#: to stop, so a callback after it would miss the last iteration).
CALLBACK_ORDER = 25


def _callback(fit: core.Fit) -> Callable[[Any], None]:
    def log_iteration(env: Any) -> None:
        values = {f"{item[0]}-{item[1]}": item[2] for item in env.evaluation_result_list or ()}
        if values:
            core.safely("log an iteration", core.log_metrics, fit, values, env.iteration)

    log_iteration.order = CALLBACK_ORDER  # type: ignore[attr-defined]
    fit.steps_logged = True
    return log_iteration


def _with_callback(
    signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any], fit: core.Fit
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    bound = signature.bind(*args, **kwargs)
    bound.arguments["callbacks"] = [*(bound.arguments.get("callbacks") or ()), _callback(fit)]
    return bound.args, bound.kwargs


def importances(fit: core.Fit, booster: Any) -> None:
    """Gain and split count per feature as ``feature_importance.csv``."""
    names = booster.feature_name()
    columns = {
        "gain": list(booster.feature_importance("gain")),
        "split": list(booster.feature_importance("split")),
    }
    core.log_importances(fit, names, columns)


def _best_iteration(fit: core.Fit, booster: Any) -> None:
    best = getattr(booster, "best_iteration", 0)
    if best:
        core.log_metrics(fit, {"best_iteration": int(best)})


def _raw_data(train_set: Any) -> Any:
    """The training data a ``Dataset`` was made from, unless it is a file name."""
    data = getattr(train_set, "data", None)
    return None if data is None or isinstance(data, str) or hasattr(data, "__fspath__") else data


def wrap_train(original: Callable[..., Any]) -> Callable[..., Any]:
    """``lightgbm.train`` that logs when it is the outermost autologged call."""
    signature = inspect.signature(original)

    def before(fit: core.Fit, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        core.begin(fit)
        fit.session.set_tags({"estimator_name": "Booster", "estimator_class": "lightgbm.Booster"})
        params = {**dict(bound.arguments.get("params") or {})}
        params.setdefault("num_boost_round", bound.arguments.get("num_boost_round"))
        core.log_params(fit, params)
        return _raw_data(bound.arguments.get("train_set"))

    def after(fit: core.Fit, booster: Any, data: Any) -> None:
        _best_iteration(fit, booster)
        core.safely("log the feature importances", importances, fit, booster)
        core.safely("save the model", core.log_model, fit, booster, data)

    @functools.wraps(original)
    def train(*args: Any, **kwargs: Any) -> Any:
        with core.guarded("lightgbm") as call:
            if call is None:
                outer = core.enclosing("lightgbm")
                if outer is not None:
                    args, kwargs = core.safely(
                        "add the metrics callback", _with_callback, signature, args, kwargs, outer
                    ) or (args, kwargs)
                return original(*args, **kwargs)
            data = core.safely("start logging the training", before, call, args, kwargs)
            if call.session is not None:
                args, kwargs = core.safely(
                    "add the metrics callback", _with_callback, signature, args, kwargs, call
                ) or (args, kwargs)
            booster = original(*args, **kwargs)
            if call.session is not None:
                core.safely("log the training", after, call, booster, data)
            return booster

    return train


class LightGBMHandler:
    """Logging around ``LGBMModel.fit`` and its subclasses."""

    library = "lightgbm"
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
            history = core.safely("read evals_result_", lambda: estimator.evals_result_)
            if history:
                core.log_eval_history(fit, history)
        booster = estimator.booster_
        _best_iteration(fit, booster)
        core.safely("log the feature importances", importances, fit, booster)
        X = core.fit_arguments(args, kwargs)[0]
        core.safely("save the model", core.log_model, fit, estimator, X)


HANDLER = LightGBMHandler()


def on_module(module: ModuleType) -> None:
    """Patch LightGBM once the ``lightgbm`` package has finished importing."""
    if module.__name__ != "lightgbm":
        return
    import lightgbm.engine

    original = lightgbm.engine.train
    if getattr(original, hooks.MARK, False):
        return
    wrapped = wrap_train(original)
    owners: list[Any] = [lightgbm, lightgbm.engine]
    sklearn_api = getattr(lightgbm, "sklearn", None)
    if sklearn_api is not None:
        owners.append(sklearn_api)
    for owner in owners:
        if getattr(owner, "train", None) is original:
            hooks.patch(owner, "train", wrapped)
    if sklearn_api is not None and hasattr(sklearn_api, "LGBMModel"):
        patch_classes(sklearn_api, sklearn_api.LGBMModel, HANDLER, prefix="LGBM")
