"""Converting an MLflow model folder (``MLmodel`` + files) into an mlcd model package.

- scikit-learn saved with skops (MLflow 3's default): loaded through mlcd's reviewed skops
  loader and saved again as an mlcd ``sklearn`` package; no trust needed unless the file holds
  types the review refuses.
- scikit-learn saved as (cloud)pickle: converting means unpickling, which runs code. With
  ``trust`` the model is unpickled and saved as skops; without, the pickle is kept as an mlcd
  ``sklearn`` package in pickle format, which ``load_model`` refuses without ``trusted=True``.
- XGBoost (native ``.xgb``/``.json``/``.ubj``), LightGBM boosters (``.lgb``) and ONNX: native
  files loaded by their library (no pickle) and saved through the mlcd flavor.
- anything else (pyfunc, pytorch, transformers...): refused, naming the flavors found.

The signature comes from the model's input example (ranges and categories), else from the
``MLmodel`` column schema (names and types only).
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlcd.digest import hash_file
from mlcd.errors import MlcdError, RegistryError, UnsafeModel
from mlcd.objects.base import iter_files
from mlcd.registry import ColumnSpec, OutputSpec, Signature, save_model
from mlcd.registry.flavors import get_flavor
from mlcd.registry.package import PACKAGE_FILE, ModelPackage, PackageFile

#: MLflow column types -> (pandas dtype, kind).
_TYPES = {
    "double": ("float64", "numeric"),
    "float": ("float32", "numeric"),
    "long": ("int64", "numeric"),
    "integer": ("int32", "numeric"),
    "boolean": ("bool", "categorical"),
    "string": ("object", "categorical"),
    "datetime": ("datetime64[ns]", "categorical"),
    "binary": ("object", "categorical"),
}
_CLASS_OUTPUTS = ("long", "integer", "string", "boolean")
CONVERTED = ("sklearn", "xgboost", "lightgbm", "onnx")


class Refused(MlcdError):
    """An MLflow model that mlcd does not convert (the reason says which flavor and why)."""


@dataclass(frozen=True)
class Converted:
    """The package written, its flavor, and whether loading it needs trust."""

    path: Path
    flavor: str
    needs_trust: bool
    note: str | None = None


def _read_mlmodel(folder: Path) -> dict[str, Any]:
    meta = folder / "MLmodel"
    if not meta.is_file():
        raise Refused(f"{folder.name}: no MLmodel file (not an MLflow model folder)")
    try:
        data = yaml.safe_load(meta.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise Refused(f"{folder.name}/MLmodel cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise Refused(f"{folder.name}/MLmodel has no flavors")
    return data


def _sample(folder: Path) -> Any:
    """The model's saved input example as a DataFrame or array, or None."""
    try:
        from mlflow.models import Model

        example = Model.load(str(folder)).load_input_example(str(folder))
    except Exception:  # an unreadable example only costs the signature's ranges
        return None
    if example is None:
        return None
    try:
        import numpy as np
        import pandas as pd

        if isinstance(example, pd.DataFrame | np.ndarray):
            return example
        if isinstance(example, dict):
            return pd.DataFrame(example)
    except Exception:
        return None
    return None


def schema_signature(mlmodel: dict[str, Any]) -> Signature:
    """A signature from the ``MLmodel`` column schema (no ranges: there is no data)."""
    signature = mlmodel.get("signature") or {}
    inputs: list[ColumnSpec] = []
    input_type = "dataframe"
    try:
        columns = json.loads(signature.get("inputs") or "[]")
    except (TypeError, ValueError):
        columns = []
    for column in columns:
        if not isinstance(column, dict) or column.get("type") == "tensor":
            input_type = "ndarray"
            inputs = []
            break
        dtype, kind = _TYPES.get(str(column.get("type")), ("object", "categorical"))
        name = column.get("name")
        if name is None:
            input_type = "ndarray"
            name = f"x{len(inputs)}"
        inputs.append(ColumnSpec(str(name), dtype, kind, not column.get("required", True)))
    try:
        outputs = json.loads(signature.get("outputs") or "[]")
    except (TypeError, ValueError):
        outputs = []
    kind = str(outputs[0].get("type")) if outputs and isinstance(outputs[0], dict) else "double"
    if kind in _CLASS_OUTPUTS:
        output = OutputSpec("classification", _TYPES.get(kind, ("object", ""))[0])
    else:
        output = OutputSpec("regression", "float64")
    return Signature(inputs=tuple(inputs), output=output, input_type=input_type)


def _keep_as_is(
    folder: Path,
    out: Path,
    mlmodel: dict[str, Any],
    file: str,
    fmt: str,
    lineage: dict[str, Any],
    description: str | None,
) -> None:
    """An mlcd ``sklearn`` package around MLflow's own file, without loading it."""
    out.mkdir(parents=True)
    shutil.copy2(folder / file, out / Path(file).name)
    files = {
        rel: PackageFile(rel, hash_file(full).hex, full.stat().st_size)
        for rel, full in iter_files(out)
    }
    sklearn_version = str((mlmodel["flavors"].get("sklearn") or {}).get("sklearn_version") or "")
    package = ModelPackage(
        path=out,
        flavor="sklearn",
        options={"file": Path(file).name, "format": fmt},
        signature=schema_signature(mlmodel),
        files=files,
        python=str(
            (mlmodel["flavors"].get("python_function") or {}).get("python_version")
            or platform.python_version()
        ),
        libraries={"scikit-learn": sklearn_version} if sklearn_version else {},
        lineage=lineage,
        model_class="",
        description=description,
    )
    (out / PACKAGE_FILE).write_text(
        yaml.safe_dump(package.to_dict(), sort_keys=False), encoding="utf-8"
    )


def convert(
    folder: Path,
    out: Path,
    *,
    trust: bool = False,
    lineage: dict[str, Any] | None = None,
    description: str | None = None,
) -> Converted:
    """Write the mlcd package for the MLflow model in ``folder`` at ``out``.

    Raises:
        Refused: the flavor is not converted, or the files are unreadable.
    """
    mlmodel = _read_mlmodel(folder)
    flavors = mlmodel["flavors"]
    lineage = dict(lineage or {})
    if "sklearn" in flavors:
        return _sklearn(folder, out, mlmodel, trust, lineage, description)
    if "xgboost" in flavors:
        return _native(folder, out, "xgboost", flavors["xgboost"], lineage, description)
    if "lightgbm" in flavors:
        return _native(folder, out, "lightgbm", flavors["lightgbm"], lineage, description)
    if "onnx" in flavors:
        return _native(folder, out, "onnx", flavors["onnx"], lineage, description)
    names = ", ".join(sorted(k for k in flavors if k != "python_function")) or "python_function"
    raise Refused(
        f"MLflow flavor {names} is not converted (mlcd converts {', '.join(CONVERTED)}); "
        "the model's files stay in the run's artifacts"
    )


def _sklearn(
    folder: Path,
    out: Path,
    mlmodel: dict[str, Any],
    trust: bool,
    lineage: dict[str, Any],
    description: str | None,
) -> Converted:
    conf = mlmodel["flavors"]["sklearn"] or {}
    file = str(conf.get("pickled_model") or "model.pkl")
    fmt = "skops" if str(conf.get("serialization_format")) == "skops" else "pickle"
    if not (folder / file).is_file():
        raise Refused(f"the MLflow sklearn model lacks its file {file!r}")
    flavor = get_flavor("sklearn")
    if fmt == "pickle" and not trust:
        _keep_as_is(folder, out, mlmodel, file, "pickle", lineage, description)
        return Converted(
            out,
            "sklearn",
            True,
            "kept as MLflow's pickle: load it with trust, or import "
            "with --trust to convert it to skops",
        )
    try:
        predictor = flavor.load(folder, {"file": file, "format": fmt}, trust)
    except UnsafeModel as exc:
        _keep_as_is(folder, out, mlmodel, file, fmt, lineage, description)
        return Converted(out, "sklearn", True, f"kept as is, loads only with trust: {exc.message}")
    except Exception as exc:
        raise Refused(f"the MLflow sklearn model could not be loaded: {exc}") from exc
    _save(predictor.raw, out, _sample(folder), "sklearn", lineage, description)
    return Converted(out, "sklearn", False)


def _save(
    model: Any,
    out: Path,
    sample: Any,
    flavor: str,
    lineage: dict[str, Any],
    description: str | None,
) -> None:
    try:
        save_model(model, out, sample, flavor, lineage=lineage, description=description)
    except RegistryError:
        raise
    except MlcdError as exc:
        raise Refused(f"the converted {flavor} model could not be saved: {exc.message}") from exc


def _native(
    folder: Path,
    out: Path,
    flavor: str,
    conf: dict[str, Any],
    lineage: dict[str, Any],
    description: str | None,
) -> Converted:
    """XGBoost, LightGBM and ONNX models from their native files (no pickle involved)."""
    conf = conf or {}
    data = folder / str(conf.get("data") or "")
    try:
        if flavor == "xgboost":
            import xgboost

            model_class = str(conf.get("model_class") or "xgboost.core.Booster").rsplit(".", 1)[-1]
            if model_class == "Booster":
                model: Any = xgboost.Booster(model_file=str(data))
            elif model_class in ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier"):
                model = getattr(xgboost, model_class)()
                model.load_model(str(data))
            else:
                raise Refused(f"XGBoost model class {model_class} is not converted")
        elif flavor == "lightgbm":
            import lightgbm

            if data.suffix != ".lgb" or not data.is_file():
                raise Refused(
                    "the MLflow LightGBM model is a pickled scikit-learn estimator: re-log it "
                    "as a Booster, or load and save it with mlcd.save_model"
                )
            model = lightgbm.Booster(model_file=str(data))
        else:
            import onnx

            data = folder / str(conf.get("data") or "model.onnx")
            model = onnx.load(str(data))
    except Refused:
        raise
    except ImportError as exc:
        raise Refused(f"converting a {flavor} model needs {exc.name} installed") from exc
    except Exception as exc:
        raise Refused(f"the MLflow {flavor} model could not be read: {exc}") from exc
    _save(model, out, _sample(folder), flavor, lineage, description)
    return Converted(out, flavor, False)
