"""Registering an existing model file (a pickle, a joblib dump, a native booster file).

``mlcd models register NAME model.pkl --flavor sklearn --trust`` reads the file through the
named flavor's library, writes a model package (scikit-learn in skops, the safe format, when
skops can hold the model) and registers it. Reading a pickle runs code, so it needs trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlcd.digest import hash_file
from mlcd.errors import RegistryError, UnsafeModel, UsageError
from mlcd.objects import ObjectStore
from mlcd.registry.flavors import missing_library
from mlcd.registry.package import save_model
from mlcd.registry.versions import Registration, register_from_path
from mlcd.store import Store

FILE_FLAVORS = ("sklearn", "xgboost", "lightgbm")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".jbl", ".sav")


def read_sample(path: str | os.PathLike[str]) -> Any:
    """A few training rows from a CSV or Parquet file (for the signature).

    Raises:
        UsageError: the file is missing or not CSV/Parquet.
    """
    import pandas as pd

    target = Path(path)
    if not target.exists():
        raise UsageError(f"sample file {target} does not exist", hint="check the --sample path")
    suffix = target.suffix.lower()
    if suffix in (".parquet", ".pq") or target.is_dir():
        return pd.read_parquet(target).head(1000)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(target, sep="\t" if suffix == ".tsv" else ",", nrows=1000)
    raise UsageError(f"cannot read sample {target}", hint="give a CSV or Parquet file")


def _unpickle(path: Path, trusted: bool) -> Any:
    if not trusted:
        raise UsageError(
            f"{path} is a pickle: loading it runs whatever code it holds",
            hint="pass --trust if you trust where the file came from; mlcd then stores the "
            "model in a safe format (skops) when it can",
        )
    import joblib  # reads plain pickles as well as joblib dumps

    try:
        return joblib.load(path)
    except Exception as exc:
        raise RegistryError(
            f"cannot read {path} as a pickle or joblib file: {exc}",
            hint="check the file and --flavor",
        ) from exc


def _native(path: Path, flavor: str, trusted: bool) -> Any:
    if flavor == "sklearn" and path.suffix.lower() == ".skops":
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
        if refused and not trusted:
            raise UnsafeModel(
                f"{path} needs types not known to be safe: {', '.join(refused)}",
                hint="pass --trust if you trust where the file came from",
            )
        return sio.load(path, trusted=untrusted)
    if flavor == "xgboost":
        import json

        import xgboost

        booster = xgboost.Booster(model_file=str(path))
        meta = json.loads(booster.attr("scikit_learn") or "{}")
        kind = {"classifier": xgboost.XGBClassifier, "regressor": xgboost.XGBRegressor}.get(
            str(meta.get("_estimator_type", ""))
        )
        if kind is None:
            return booster
        model = kind()
        model.load_model(str(path))
        return model
    if flavor == "lightgbm":
        import lightgbm
        import numpy as np

        native: Any = lightgbm.Booster(model_file=str(path))
        header = _lightgbm_header(path)
        objective = header.get("objective", "").split(" ")[0]
        if objective == "binary":  # a bare booster keeps no labels: those of its objective
            native.classes_ = np.array([0, 1])
        elif objective in ("multiclass", "multiclassova"):
            native.classes_ = np.arange(int(header.get("num_class", "2")))
        return native
    raise UsageError(
        f"cannot read {path} as a {flavor} model file",
        hint="scikit-learn models come as .pkl/.joblib (with --trust) or .skops files",
    )


def _lightgbm_header(path: Path) -> dict[str, str]:
    """``key=value`` lines at the top of a LightGBM text model (objective, num_class...)."""
    found: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for _, line in zip(range(64), handle, strict=False):
            key, sep, value = line.strip().partition("=")
            if sep:
                found[key] = value
    return found


def read_model_file(path: str | os.PathLike[str], flavor: str, trusted: bool = False) -> Any:
    """The model object in ``path``, read through ``flavor``'s library.

    Raises:
        UsageError: unknown flavor, missing file, or a pickle without ``trusted``.
        RegistryError: the file cannot be read.
    """
    source = Path(path)
    if flavor not in FILE_FLAVORS:
        raise UsageError(
            f"--flavor must be one of {', '.join(FILE_FLAVORS)}, not {flavor!r}",
            hint="ONNX and custom models: save a package with mlcd.save_model first",
        )
    if not source.is_file():
        raise UsageError(f"model file {source} does not exist", hint="check the path")
    try:
        if source.suffix.lower() in PICKLE_SUFFIXES:
            return _unpickle(source, trusted)
        return _native(source, flavor, trusted)
    except ImportError as exc:
        raise missing_library(flavor, exc) from exc


def fit_sample(model: Any, sample: Any, target: str | None = None) -> tuple[Any, list[str]]:
    """Cut a sample table to the columns ``model`` was fitted on; returns it and what was dropped.

    The declared ``target`` is dropped; a model that knows its feature names keeps exactly
    those; one that only knows its feature count must then match it.

    Raises:
        UsageError: the sample lacks a fitted column, or its width does not match the model.
    """
    if sample is None or not hasattr(sample, "columns"):
        return sample, []
    dropped = [target] if target is not None and target in sample.columns else []
    sample = sample.drop(columns=dropped)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = [str(n) for n in names]
        missing = [n for n in names if n not in sample.columns]
        if missing:
            raise UsageError(
                f"the sample lacks {len(missing)} column(s) the model was fitted on: "
                + ", ".join(repr(m) for m in missing[:5]),
                hint="give a sample of the training inputs (--sample)",
            )
        dropped += [str(c) for c in sample.columns if str(c) not in names]
        return sample[names], dropped
    count = getattr(model, "n_features_in_", None)
    if isinstance(count, int) and sample.shape[1] != count:
        raise UsageError(
            f"the sample has {sample.shape[1]} columns but the model was fitted on "
            f"{count} features (without names, so mlcd cannot tell which to keep)",
            hint="say which column is the label with --target COL (or models.NAME.target in "
            "mlcd.yaml), or give a sample of the inputs only",
        )
    return sample, dropped


def register_file(
    store: Store,
    objects: ObjectStore,
    name: str,
    path: str | os.PathLike[str],
    flavor: str,
    *,
    trusted: bool = False,
    sample: Any = None,
    run_id: str | None = None,
    source: str | None = None,
    tags: Mapping[str, Any] | None = None,
    target: str | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Registration:
    """Read a model file, save it as a package and register it (same file: same version).

    ``sample`` is cut to the model's fitted columns first (see :func:`fit_sample`); what was
    dropped is said through ``on_note``.

    Raises:
        UsageError: see :func:`read_model_file` and :func:`fit_sample`.
        RegistryError: the model cannot be packaged.
    """
    model = read_model_file(path, flavor, trusted)
    sample, dropped = fit_sample(model, sample, target)
    if dropped and on_note is not None:
        on_note(
            "dropped "
            + ", ".join(repr(c) for c in dropped)
            + " from the sample: the model was not fitted on them"
        )
    lineage = {"file": str(path), "file_digest": hash_file(Path(path)).hex}
    staging = Path(tempfile.mkdtemp(prefix="mlcd-register-"))
    try:
        package = staging / "package"
        try:
            save_model(model, package, sample, flavor, trusted=trusted, lineage=lineage)
        except Exception as exc:  # skops cannot hold every model: keep the trusted pickle
            if not trusted or flavor != "sklearn" or isinstance(exc, UsageError):
                raise
            save_model(
                model, package, sample, flavor, trusted=True, lineage=lineage,
                serialization="pickle",
            )  # fmt: skip
        return register_from_path(
            store, objects, name, package, run_id=run_id, source=source or str(path), tags=tags
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
