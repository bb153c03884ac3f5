"""The model package: a folder with the model in its flavor's format and ``model.yaml``.

``model.yaml`` records the flavor and its options, the signature, the Python and library
versions, lineage (run, training data digests) and a BLAKE3 digest per file. Reading a
package checks, before anything is deserialised, that every file is listed, that no path
leaves the folder, and that every file still has its recorded digest.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlcd.digest import Digest, hash_bytes, hash_file
from mlcd.errors import RegistryError, UnsafeModel, UsageError
from mlcd.objects.base import ManifestEntry, encode_manifest, iter_files
from mlcd.registry.flavors import Flavor, detect_flavor, get_flavor, missing_library
from mlcd.registry.signature import (
    INPUT_DATAFRAME,
    INPUT_NDARRAY,
    OutputSpec,
    Signature,
    as_frame,
    infer_inputs,
    infer_output,
)
from mlcd.yamlfile import MAX_CONFIG_BYTES, load_file

PACKAGE_FILE = "model.yaml"
FORMAT = 1
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class PackageFile:
    """One file of a package with its digest and size."""

    path: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ModelPackage:
    """A model package on disk, as described by its ``model.yaml``."""

    path: Path
    flavor: str
    options: dict[str, Any]
    signature: Signature
    files: dict[str, PackageFile]
    python: str = ""
    libraries: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    model_class: str = ""
    description: str | None = None
    #: the data contract of the training data (``data:`` in mlcd.yaml), for the columns the
    #: model reads: the server refuses a request that breaks one of its error rules
    contract: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return self.signature.output.task

    @property
    def size_bytes(self) -> int:
        """Total size of the model files (``model.yaml`` excluded)."""
        return sum(f.size for f in self.files.values())

    def training_digests(self) -> set[str]:
        """Digests of the data the model was trained on, as recorded in its lineage."""
        data = self.lineage.get("data") or {}
        return {str(v) for v in data.values()} if isinstance(data, Mapping) else set()

    def to_dict(self) -> dict[str, Any]:
        """The content of ``model.yaml``."""
        return {
            "mlcd_model": FORMAT,
            "flavor": self.flavor,
            "options": self.options,
            "model_class": self.model_class,
            "description": self.description,
            "python": self.python,
            "libraries": self.libraries,
            "signature": self.signature.to_dict(),
            "lineage": self.lineage,
            **({"contract": self.contract} if self.contract else {}),
            "files": {name: f.to_dict() for name, f in sorted(self.files.items())},
        }

    @classmethod
    def read(cls, path: str | os.PathLike[str], verify: bool = True) -> ModelPackage:
        """Read a package's ``model.yaml``; with ``verify``, check every file first.

        Raises:
            RegistryError: not a package, or ``model.yaml`` is malformed.
            UnsafeModel: a path leaves the folder, a file is unlisted, missing or modified.
        """
        root = Path(path)
        meta = _read_meta(root)
        files = _files_of(root, meta)
        package = cls(
            path=root,
            flavor=str(meta["flavor"]),
            options=dict(meta.get("options") or {}),
            signature=Signature.from_dict(meta.get("signature") or {}),
            files=files,
            python=str(meta.get("python", "")),
            libraries={str(k): str(v) for k, v in (meta.get("libraries") or {}).items()},
            lineage=dict(meta.get("lineage") or {}),
            model_class=str(meta.get("model_class", "")),
            description=meta.get("description"),
            contract=dict(meta.get("contract") or {}),
        )
        referenced = package.options.get("file")
        if referenced is not None and str(referenced) not in files:
            raise UnsafeModel(
                f"{root / PACKAGE_FILE}: options.file {referenced!r} is not among the package files",
                hint="the package was edited by hand or is incomplete: save it again",
            )
        if verify:
            package.verify()
        return package

    def verify(self) -> None:
        """Check that the folder holds exactly the listed files with their digests.

        Raises:
            UnsafeModel: naming the first file that escapes, is unlisted, missing or modified.
        """
        root = self.path
        for relative, full in iter_files(root):
            if relative == PACKAGE_FILE:
                continue
            if full.is_symlink() or relative not in self.files:
                what = "a symbolic link" if full.is_symlink() else "not listed in model.yaml"
                raise UnsafeModel(
                    f"model package {root}: file '{relative}' is {what}",
                    hint="remove it, or save the model again with mlcd.save_model",
                )
        for name, entry in self.files.items():
            full = root / name
            linked = next((p for p in (full, *full.parents) if p.is_symlink()), None)
            if linked is not None and linked.is_relative_to(root) and linked != root:
                raise UnsafeModel(
                    f"model package {root}: file '{name}' is reached through a symbolic link "
                    f"('{linked.relative_to(root).as_posix()}')",
                    hint="replace the link with the file itself, or save the model again",
                )
            if not full.is_file():
                raise UnsafeModel(
                    f"model package {root}: file '{name}' listed in model.yaml is missing",
                    hint="the package is incomplete: fetch or save it again",
                )
            actual = hash_file(full).hex
            if actual != entry.digest:
                raise UnsafeModel(
                    f"model package {root}: file '{name}' was modified "
                    f"(digest {actual[:12]}, model.yaml says {entry.digest[:12]})",
                    hint="the file was tampered with or corrupted; restore it from the registry "
                    "or save the model again",
                )

    def flavor_impl(self) -> Flavor:
        """The flavor that loads this package."""
        return get_flavor(self.flavor)


def _read_meta(root: Path) -> dict[str, Any]:
    meta_path = root / PACKAGE_FILE
    if not root.is_dir():
        raise RegistryError(
            f"no model package at {root}: not a folder",
            hint="pass a folder written by mlcd.save_model, 'name@alias' or 'name/VERSION'",
        )
    if meta_path.is_symlink():
        raise UnsafeModel(
            f"model package {root}: {PACKAGE_FILE} is a symbolic link; packages hold no links",
            hint="replace the link with the file itself, or save the model again",
        )
    if not meta_path.is_file():
        raise RegistryError(
            f"{root} is not a model package: it has no {PACKAGE_FILE}",
            hint="write packages with mlcd.save_model(model, path, sample_input=...)",
        )
    try:
        meta = load_file(meta_path, str(meta_path), limit=MAX_CONFIG_BYTES)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{meta_path}: invalid YAML: {exc}") from exc
    if not isinstance(meta, dict) or "flavor" not in meta or "files" not in meta:
        raise RegistryError(
            f"{meta_path} is not an mlcd model description (needs 'flavor' and 'files')",
            hint="write packages with mlcd.save_model",
        )
    if int(meta.get("mlcd_model", 0)) > FORMAT:
        raise RegistryError(
            f"{meta_path} uses package format {meta['mlcd_model']}, newer than this mlcd "
            f"understands ({FORMAT})",
            hint="upgrade mlcd: pip install -U mlcd",
        )
    return meta


def _files_of(root: Path, meta: Mapping[str, Any]) -> dict[str, PackageFile]:
    raw = meta.get("files")
    if not isinstance(raw, Mapping):
        raise RegistryError(f"{root / PACKAGE_FILE}: 'files' must be a mapping of path -> digest")
    files = {}
    resolved_root = root.resolve()
    for name, entry in raw.items():
        name = str(name)
        parts = Path(name).parts
        escapes = (
            not name
            or name.startswith(("/", "\\"))
            or Path(name).is_absolute()
            or ".." in parts
            or "\\" in name
        )
        if not escapes:
            target = (root / name).resolve()
            escapes = not target.is_relative_to(resolved_root)
        if escapes:
            raise UnsafeModel(
                f"model package {root}: path {name!r} in model.yaml leaves the package folder",
                hint="this package was crafted or corrupted; do not load it",
            )
        if name == PACKAGE_FILE:
            raise UnsafeModel(f"model package {root}: model.yaml cannot list itself")
        if not isinstance(entry, Mapping) or "digest" not in entry:
            raise RegistryError(f"{root / PACKAGE_FILE}: files.{name} needs a digest")
        files[name] = PackageFile(name, str(entry["digest"]), int(entry.get("size", 0)))
    return files


# ---------------------------------------------------------------- saving
def _environment_lineage(lineage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Lineage given by the caller, completed from the stage environment of ``mlcd run``."""
    out = dict(lineage or {})
    if os.environ.get("MLCD_RUN_ID"):
        out.setdefault("run_id", os.environ["MLCD_RUN_ID"])
    if os.environ.get("MLCD_STAGE"):
        out.setdefault("stage", os.environ["MLCD_STAGE"])
    if os.environ.get("MLCD_WARM_START_VERSION"):  # a warm_start stage: training continued
        out.setdefault(
            "parent",
            {
                "model": os.environ.get("MLCD_WARM_START_MODEL"),
                "version": int(os.environ["MLCD_WARM_START_VERSION"]),
                "digest": os.environ.get("MLCD_WARM_START_DIGEST"),
            },
        )
    return out


def _declared_contract(training_data: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Inside ``mlcd run``: the ``data:`` contract of the first training file that has one."""
    project = os.environ.get("MLCD_PROJECT")
    paths = [Path(p) for p in training_data]
    if not project or not paths:
        return {}
    from mlcd.config import load_config
    from mlcd.errors import MlcdError

    root = Path(project)
    try:
        declared = load_config(root).data
    except MlcdError:
        return {}
    wanted = {(p if p.is_absolute() else Path.cwd() / p).resolve().as_posix() for p in paths}
    for name, contract in declared.items():
        if (root / contract.path).resolve().as_posix() in wanted:
            rules = {
                column: rule.model_dump(exclude_defaults=True)
                for column, rule in contract.columns.items()
            }
            return {"name": name, "path": contract.path, "columns": rules}
    return {}


def content_digest(path: str | os.PathLike[str]) -> Digest:
    """The digest a file or folder would have in the object store, without storing it."""
    target = Path(path)
    if target.is_file():
        return hash_file(target)
    if target.is_dir():
        entries = [
            ManifestEntry(relative, hash_file(full), full.stat().st_size)
            for relative, full in iter_files(target)
        ]
        return Digest(hash_bytes(encode_manifest(entries)).hex, is_dir=True)
    raise UsageError(f"{target} does not exist", hint="check the path")


def _predictions(model: Any, frame: Any, input_type: str) -> tuple[Any, bool]:
    """Predictions on the sample (to learn the output type) and whether probabilities work."""
    complete = frame.dropna()
    rows = (complete if len(complete) else frame).head(5)
    X = rows if input_type == INPUT_DATAFRAME else rows.to_numpy()
    try:
        predictions = model.predict(X)
    except Exception:
        return None, False
    proba = callable(getattr(model, "predict_proba", None))
    return predictions, proba


def fitted_input(model: Any, frame: Any, input_type: str) -> tuple[Any, str]:
    """The sample and input type matching how the model was fitted, not how the sample looks.

    A scikit-learn style model fitted on an array (``n_features_in_`` without
    ``feature_names_in_``) gets arrays, or every call warns that "X has feature names"; one
    fitted on a table gets a table, with the fitted names when the sample was an array.
    """
    try:
        names = getattr(model, "feature_names_in_", None)
        fitted = getattr(model, "n_features_in_", None) is not None
    except Exception:  # a property of an unfitted or exotic estimator
        return frame, input_type
    if not fitted:
        return frame, input_type
    if names is None:
        return frame, INPUT_NDARRAY
    names = [str(n) for n in names]
    if frame is not None and input_type == INPUT_NDARRAY and len(names) == frame.shape[1]:
        frame = frame.set_axis(names, axis=1)
    return frame, INPUT_DATAFRAME if frame is None or list(frame.columns) == names else input_type


def _prepare_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"cannot save a model to {path}: it is a file", hint="pick a folder path")
    if path.is_dir() and any(path.iterdir()) and not (path / PACKAGE_FILE).is_file():
        raise UsageError(
            f"cannot save a model to {path}: the folder holds other files",
            hint="pick an empty or new folder (an existing model package is replaced)",
        )


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    sample_input: Any = None,
    flavor: str | None = None,
    *,
    trusted: bool = False,
    lineage: Mapping[str, Any] | None = None,
    training_data: Iterable[str | os.PathLike[str]] = (),
    serialization: str | None = None,
    description: str | None = None,
    contract: Mapping[str, Any] | None = None,
) -> ModelPackage:
    """Write ``model`` as a package folder at ``path`` (an existing package there is replaced).

    Args:
        model: a scikit-learn, XGBoost, LightGBM or ONNX model, or (with ``trusted``) any
            object with ``predict``.
        path: the package folder.
        sample_input: a few training rows (DataFrame, dict of columns or 2-D array); the
            signature's columns, ranges and categories come from it.
        flavor: force a flavor instead of detecting it.
        trusted: allow pickle (the generic Python flavor, or ``serialization="pickle"``).
        lineage: extra lineage (``run_id``, ``data: {path: digest}``); inside ``mlcd run``
            the run and stage are filled in from the environment.
        training_data: files or folders the model was trained on; their digests go into the
            lineage so that evaluation on them is refused.
        serialization: ``skops`` (default) or ``pickle`` for scikit-learn models.
        description: free text stored in ``model.yaml``.
        contract: ``{name, path, columns: {column: rule}}``, the training data's contract
            (default: inside ``mlcd run``, the ``data:`` contract of a ``training_data`` path).

    Returns:
        The package, as it would be read back.

    Raises:
        UsageError: the target is not a usable folder, or pickle without ``trusted``.
        RegistryError: no flavor recognises the model.
    """
    target = Path(path)
    _prepare_target(target)
    impl = get_flavor(flavor) if flavor else detect_flavor(model)
    frame, input_type = (None, INPUT_DATAFRAME) if sample_input is None else as_frame(sample_input)
    if impl.name in ("sklearn", "xgboost"):  # estimators that warn about feature names
        frame, input_type = fitted_input(model, frame, input_type)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        try:
            if serialization is not None and hasattr(impl, "save_as"):
                options = impl.save_as(model, staging, trusted, serialization)
            else:
                options = impl.save(model, staging, trusted)
        except ImportError as exc:
            raise missing_library(impl.name, exc) from exc
        classes = impl.classes(model)
        predictions, proba = None, callable(getattr(model, "predict_proba", None))
        if frame is not None and classes is None:  # a regressor: learn the output dtype
            predictions, proba = _predictions(model, frame, input_type)
        output = (
            infer_output(predictions, classes, proba or classes is not None)
            if predictions is not None or classes is not None
            else OutputSpec("regression", "float64")
        )
        signature = Signature(
            inputs=infer_inputs(frame) if frame is not None else (),
            output=output,
            input_type=input_type,
        )
        merged_lineage = _environment_lineage(lineage)
        data = dict(merged_lineage.get("data") or {})
        for item in training_data:
            data[str(item)] = str(content_digest(item))
        if data:
            merged_lineage["data"] = data
        if contract is None:
            contract = _declared_contract(training_data)
        if contract and signature.inputs:
            names = {c.name for c in signature.inputs}
            columns = {k: v for k, v in (contract.get("columns") or {}).items() if k in names}
            contract = {**contract, "columns": columns} if columns else {}
        files = {
            relative: PackageFile(relative, hash_file(full).hex, full.stat().st_size)
            for relative, full in iter_files(staging)
        }
        package = ModelPackage(
            path=target,
            flavor=impl.name,
            options=options,
            signature=signature,
            files=files,
            python=platform.python_version(),
            libraries=impl.versions(),
            lineage=merged_lineage,
            model_class=f"{type(model).__module__}.{type(model).__qualname__}",
            description=description,
            contract=dict(contract or {}),
        )
        (staging / PACKAGE_FILE).write_text(
            yaml.dump(package.to_dict(), Dumper=_Dumper, sort_keys=False), encoding="utf-8"
        )
        _swap_in(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return package


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` with ``staging`` so readers never see half a package."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
