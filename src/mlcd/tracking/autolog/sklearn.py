"""scikit-learn: every estimator class's own ``fit``, patched in the module that defines it.

Logged per outermost ``fit``: ``get_params(deep=True)``; training metrics computed from one
prediction over the training data (as MLflow's autolog does: accuracy, weighted precision,
recall and F1, log loss and ROC AUC for classifiers; MSE, RMSE, MAE and R² for regressors;
``training_score``); ``feature_importances_`` as a table; the fitted estimator as a package.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Protocol

from mlcd.tracking.autolog import core, hooks


class Handler(Protocol):
    """What one library logs around an estimator's ``fit``."""

    library: str
    accepts_iterations: bool

    def before(
        self, fit: core.Fit, estimator: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None: ...

    def after(
        self, fit: core.Fit, estimator: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None: ...


def wrap_fit(original: Callable[..., Any], handler: Handler) -> Callable[..., Any]:
    """``fit`` that logs through ``handler`` when it is the outermost autologged call."""

    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        with core.guarded(handler.library, handler.accepts_iterations) as call:
            if call is None:
                return original(self, *args, **kwargs)
            core.safely("start logging the fit", handler.before, call, self, args, kwargs)
            result = original(self, *args, **kwargs)
            if call.session is not None:
                core.safely("log the fit", handler.after, call, self, args, kwargs)
            return result

    return fit


def patch_classes(module: ModuleType, base: type, handler: Handler, prefix: str = "") -> None:
    """Patch ``fit`` of the estimator classes ``module`` defines (not those it imports)."""
    for obj in list(vars(module).values()):
        if (
            isinstance(obj, type)
            and obj.__module__ == module.__name__
            and "fit" in obj.__dict__
            and obj.__name__.startswith(prefix)
            and issubclass(obj, base)
            and callable(obj.__dict__["fit"])
        ):
            hooks.patch(obj, "fit", wrap_fit(obj.__dict__["fit"], handler))


# ---------------------------------------------------------------------- what is logged
def _classifier_metrics(estimator: Any, X: Any, y: Any, weight: Any) -> dict[str, float]:
    from sklearn import metrics

    predicted = estimator.predict(X)
    out: dict[str, float] = {}
    scorers: dict[str, Callable[[], float]] = {
        "training_accuracy_score": lambda: metrics.accuracy_score(
            y, predicted, sample_weight=weight
        ),
        "training_precision_score": lambda: metrics.precision_score(
            y, predicted, average="weighted", zero_division=0, sample_weight=weight
        ),
        "training_recall_score": lambda: metrics.recall_score(
            y, predicted, average="weighted", zero_division=0, sample_weight=weight
        ),
        "training_f1_score": lambda: metrics.f1_score(
            y, predicted, average="weighted", zero_division=0, sample_weight=weight
        ),
    }
    if _has(estimator, "predict_proba"):
        proba = estimator.predict_proba(X)
        labels = getattr(estimator, "classes_", None)
        scorers["training_log_loss"] = lambda: metrics.log_loss(
            y, proba, labels=labels, sample_weight=weight
        )
        if getattr(proba, "ndim", 0) == 2 and proba.shape[1] == 2:
            scorers["training_roc_auc"] = lambda: metrics.roc_auc_score(
                y, proba[:, 1], sample_weight=weight
            )
        elif getattr(proba, "ndim", 0) == 2:
            scorers["training_roc_auc"] = lambda: metrics.roc_auc_score(
                y, proba, multi_class="ovr", labels=labels, sample_weight=weight
            )
    for key, score in scorers.items():
        try:
            out[key] = float(score())
        except (ValueError, TypeError):  # one class in y, multi-output: skip that metric
            continue
    return out


def _regressor_metrics(estimator: Any, X: Any, y: Any, weight: Any) -> dict[str, float]:
    from sklearn import metrics

    predicted = estimator.predict(X)
    mse = float(metrics.mean_squared_error(y, predicted, sample_weight=weight))
    return {
        "training_mean_squared_error": mse,
        "training_root_mean_squared_error": math.sqrt(mse),
        "training_mean_absolute_error": float(
            metrics.mean_absolute_error(y, predicted, sample_weight=weight)
        ),
        "training_r2_score": float(metrics.r2_score(y, predicted, sample_weight=weight)),
    }


def _has(estimator: Any, name: str) -> bool:
    try:  # available_if raises AttributeError, other properties may raise anything
        return callable(getattr(estimator, name, None))
    except Exception:
        return False


def training_metrics(estimator: Any, X: Any, y: Any, weight: Any) -> dict[str, float]:
    """MLflow's training metrics, from one prediction (two with probabilities)."""
    from sklearn.base import ClassifierMixin, RegressorMixin, is_classifier, is_regressor

    if X is None or not _has(estimator, "predict"):
        return {}
    if y is None:
        score = getattr(type(estimator), "score", None)
        return {"training_score": estimator.score(X)} if callable(score) else {}
    if is_classifier(estimator):
        out = _classifier_metrics(estimator, X, y, weight)
        default = ClassifierMixin.score, "training_accuracy_score"
    elif is_regressor(estimator):
        out = _regressor_metrics(estimator, X, y, weight)
        default = RegressorMixin.score, "training_r2_score"
    else:
        out, default = {}, (None, "")
    own_score = getattr(type(estimator), "score", None)
    if own_score is not None and own_score is default[0] and default[1] in out:
        out["training_score"] = out[default[1]]  # the same number: no second prediction
    elif callable(own_score):
        try:  # a score of its own (a search, a meta-estimator) may refuse sample weights
            extra = {} if weight is None else {"sample_weight": weight}
            out["training_score"] = float(estimator.score(X, y, **extra))
        except Exception:
            pass  # the other training metrics stand without it
    return out


def importances(fit: core.Fit, estimator: Any) -> None:
    """``feature_importances_`` (trees, forests, boosting) as ``feature_importance.csv``."""
    try:
        values = estimator.feature_importances_
    except Exception:  # not a tree model, or a property that needs something else
        return
    if values is None or getattr(values, "ndim", 1) != 1:
        return
    names = core.feature_names(estimator, len(values))
    core.log_importances(fit, names, {"importance": list(values)})


class SklearnHandler:
    """Logging around a scikit-learn estimator's ``fit``."""

    library = "sklearn"
    accepts_iterations = False

    def before(
        self, fit: core.Fit, estimator: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        core.begin(fit, estimator)
        core.log_params(fit, estimator.get_params(deep=True))

    def after(
        self, fit: core.Fit, estimator: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        X, y, weight = core.fit_arguments(args, kwargs)
        settings = core.settings
        if settings is not None and settings.log_training_metrics:
            metrics = core.safely(
                "compute the training metrics", training_metrics, estimator, X, y, weight
            )
            if metrics:
                core.log_metrics(fit, metrics)
        core.safely("log the feature importances", importances, fit, estimator)
        core.safely("save the model", core.log_model, fit, estimator, X)


HANDLER = SklearnHandler()
_pending: list[ModuleType] = []


def on_module(module: ModuleType) -> None:
    """Patch a ``sklearn.*`` module that has just been imported (or was already)."""
    import sys

    base_module = sys.modules.get("sklearn.base")
    base = getattr(base_module, "BaseEstimator", None)
    if base is None:  # imported before sklearn.base: patched once the base class exists
        _pending.append(module)
        return
    while _pending:
        patch_classes(_pending.pop(), base, HANDLER)
    patch_classes(module, base, HANDLER)
