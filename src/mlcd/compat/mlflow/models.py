"""Models through the MLflow names: ``infer_signature``, ``ModelInfo`` and model URIs.

A model logged with ``mlflow.sklearn.log_model`` is saved as an mlcd package (skops), stored
in the object store as an artifact of the run under its ``name``, and registered when
``registered_model_name`` is given. Its URI is ``runs:/RUN_ID/NAME``; ``models:/NAME/3``
and ``models:/NAME@ALIAS`` name registered versions; a folder path names a package.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd.compat.errors import UnsupportedCall
from mlcd.errors import NotFound, UsageError

__all__ = ["ModelInfo", "ModelSignature", "infer_signature", "load", "log_package"]

#: Packages logged in this process, by URI: loading them back needs no store round trip.
_logged: dict[str, Path] = {}
_scratch: list[tempfile.TemporaryDirectory[str]] = []


@dataclass(frozen=True)
class ModelSignature:
    """What ``infer_signature`` returns: the sample mlcd infers its signature from."""

    inputs: Any
    outputs: Any = None


def infer_signature(model_input: Any = None, model_output: Any = None, params: Any = None) -> Any:
    """Keep the input sample; ``log_model`` infers mlcd's signature (ranges, categories)
    from it."""
    return ModelSignature(model_input, model_output)


@dataclass(frozen=True)
class ModelInfo:
    """What ``log_model`` returns."""

    model_uri: str
    artifact_path: str
    run_id: str
    registered_model_version: int | None = None
    flavor: str = "sklearn"

    @property
    def model_id(self) -> str:
        """MLflow 3's model id: here the URI's run and name."""
        return f"{self.run_id}/{self.artifact_path}"


def _context() -> tuple[Any, Any, Path]:
    """The store, object store and model cache of the project (else ``./.mlcd``)."""
    from mlcd.errors import ConfigError
    from mlcd.registry import project_context

    try:
        return project_context()
    except ConfigError:
        from mlcd.config import DEFAULT_ARTIFACTS, DEFAULT_STORE
        from mlcd.objects import open_object_store
        from mlcd.store import Store

        root = Path.cwd()
        key = str(root)
        cached = _local.get(key)
        if cached is None:
            cached = (
                Store(DEFAULT_STORE, root=root),
                open_object_store(DEFAULT_ARTIFACTS, root=root),
                root / ".mlcd" / "cache" / "models",
            )
            _local[key] = cached
        return cached


_local: dict[str, tuple[Any, Any, Path]] = {}


def log_package(
    model: Any,
    name: str,
    *,
    flavor: str,
    sample: Any = None,
    registered_model_name: str | None = None,
    run_id: str,
) -> ModelInfo:
    """Save ``model`` as an mlcd package, store it as the run's artifact ``name``, register it."""
    from mlcd.registration import save_model
    from mlcd.tracking import api

    holder = tempfile.TemporaryDirectory(prefix="mlcd-compat-model-")
    _scratch.append(holder)  # kept until exit: load_model reads it back without a fetch
    folder = Path(holder.name) / name.replace("/", "_")
    save_model(model, folder, sample, flavor)
    api.log_artifact(folder, name)
    uri = f"runs:/{run_id}/{name}"
    _logged[uri] = folder
    version = None
    if registered_model_name:
        from mlcd.registry import register_from_path

        store, objects, _cache = _context()
        registration = register_from_path(
            store,
            objects,
            registered_model_name,
            folder,
            run_id=run_id,
            source=f"log_model:run:{run_id}",
        )
        version = registration.version.version
    return ModelInfo(uri, name, run_id, version, flavor)


def load(model_uri: str | os.PathLike[str], *, trusted: bool = False) -> Any:
    """The mlcd model a URI names (``runs:/``, ``models:/``, or a package folder).

    Raises:
        UsageError: a malformed URI.
        NotFound: no such run artifact, model, version or alias.
        UnsupportedCall: another URI scheme (``s3://``, ``dbfs:/``...).
    """
    from mlcd.registry import load_model

    uri = os.fspath(model_uri)
    if uri in _logged:
        return load_model(_logged[uri], trusted=trusted)
    if uri.startswith("runs:/"):
        return load_model(_fetch_run_artifact(uri), trusted=trusted)
    if uri.startswith("models:/"):
        ref = uri.removeprefix("models:/").strip("/")
        store, objects, cache = _context()
        if "@" not in ref and "/" not in ref:
            raise UsageError(
                f"{uri} names a model, not a version",
                hint=f"use models:/{ref}/VERSION or models:/{ref}@ALIAS",
            )
        return load_model(ref, store=store, objects=objects, cache_dir=cache, trusted=trusted)
    if "://" in uri or uri.startswith("dbfs:"):
        raise UnsupportedCall(
            f"load_model({uri!r})",
            hint="load from runs:/RUN/NAME, models:/NAME/VERSION, models:/NAME@ALIAS or a folder",
        )
    return load_model(uri, trusted=trusted)


def _fetch_run_artifact(uri: str) -> Path:
    from mlcd.digest import Digest
    from mlcd.store import runs
    from mlcd.tracking import api

    run_id, _, name = uri.removeprefix("runs:/").partition("/")
    if not run_id or not name:
        raise UsageError(f"malformed model URI {uri!r}", hint="runs:/RUN_ID/ARTIFACT_NAME")
    api.flush()  # the artifact record may still be buffered
    store, objects, cache = _context()
    with store.read() as conn:
        found = [a for a in runs.artifacts_of(conn, run_id) if a.path == name.strip("/")]
    if not found:
        raise NotFound(
            f"run {run_id} has no model artifact {name!r}",
            hint="check the run id and the name given to log_model",
        )
    digest = Digest.parse(found[-1].digest)
    target = cache / "runs" / digest.hex
    if not target.is_dir():
        objects.get_dir(digest, target)
    return target
