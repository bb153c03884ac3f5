"""``mlflow.sklearn``: ``log_model``, ``save_model``, ``load_model`` and ``autolog`` on mlcd."""

from __future__ import annotations

import os
from typing import Any

from mlcd.compat.errors import UnsupportedCall
from mlcd.compat.mlflow import fluent
from mlcd.compat.mlflow.models import ModelInfo, ModelSignature, load, log_package
from mlcd.errors import UsageError

__all__ = ["autolog", "load_model", "log_model", "save_model"]


def _sample(signature: Any, input_example: Any) -> Any:
    if input_example is not None:
        return input_example
    if isinstance(signature, ModelSignature):
        return signature.inputs
    return None


def log_model(
    sk_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    registered_model_name: str | None = None,
    serialization_format: str | None = None,
    **ignored: Any,
) -> ModelInfo:
    """Save the estimator as an mlcd package (skops) on the active run, registering it when
    ``registered_model_name`` is given.

    Environment arguments (``pip_requirements``, ``conda_env``, ``metadata``...) are accepted
    and ignored: mlcd records the library versions itself.

    Raises:
        UsageError: no name, or the model cannot be saved.
        UnsupportedCall: ``serialization_format`` other than skops.
    """
    label = name or artifact_path
    if not label:
        raise UsageError("log_model needs name= (or artifact_path=)", hint="name='model'")
    if serialization_format not in (None, "skops"):
        raise UnsupportedCall(
            f"mlflow.sklearn.log_model(serialization_format={serialization_format!r})",
            hint="mlcd saves scikit-learn models with skops (no pickle): drop the argument",
        )
    run = fluent._ensure_run(None, "mlflow.sklearn.log_model")
    return log_package(
        sk_model,
        label,
        flavor="sklearn",
        sample=_sample(signature, input_example),
        registered_model_name=registered_model_name,
        run_id=run.id,
    )


def save_model(
    sk_model: Any,
    path: str | os.PathLike[str],
    *,
    signature: Any = None,
    input_example: Any = None,
    **ignored: Any,
) -> None:
    """Save the estimator as an mlcd package folder at ``path``."""
    from mlcd.registration import save_model as save

    save(sk_model, path, _sample(signature, input_example), "sklearn")


def load_model(model_uri: str | os.PathLike[str], dst_path: str | None = None) -> Any:
    """The scikit-learn estimator itself (``runs:/``, ``models:/`` or a package folder)."""
    return load(model_uri).raw


def autolog(**kwargs: Any) -> None:
    """Log params, training metrics and the fitted model of every scikit-learn ``fit``."""
    from mlcd.compat.mlflow.autolog import enable

    enable(**kwargs)
