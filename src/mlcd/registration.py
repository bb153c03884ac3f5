"""Registering models: the ones a pipeline produced, and ``mlcd.log_model`` from a run.

After ``mlcd run`` (or a retrain, or ``mlcd ci``), every model declared under ``models:``
whose package folder exists is registered (the same package again is the same version, so
this is idempotent). A new version also gets its reference profile: the declared
``reference_data`` (else ``monitor.reference``) is profiled once, with the model's own
predictions on it, and stored by digest, so monitoring never re-reads the training set.

``mlcd.save_model`` and ``mlcd.log_model`` live here (above both ``tracking`` and
``registry``) so that the active run, manual or a pipeline stage's, lands in the lineage.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import MlcdError

if TYPE_CHECKING:
    from mlcd.config import Config
    from mlcd.objects import ObjectStore
    from mlcd.registry import ModelPackage, ModelVersion
    from mlcd.store import Store

log = logging.getLogger("mlcd.registration")


def _run_lineage(lineage: Mapping[str, Any] | None) -> dict[str, Any]:
    """``lineage`` with the active run's id (a ``start_run`` block or the stage's run)."""
    out = dict(lineage or {})
    if "run_id" not in out:
        from mlcd.tracking.api import active_run

        run = active_run()
        if run is not None:
            out["run_id"] = run.id
    return out


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
) -> ModelPackage:
    """Write ``model`` as a package folder; the active run goes into its lineage.

    The arguments, return value and errors are those of :func:`mlcd.registry.save_model`.
    """
    from mlcd.registry import save_model as save

    return save(
        model,
        path,
        sample_input,
        flavor,
        trusted=trusted,
        lineage=_run_lineage(lineage),
        training_data=training_data,
        serialization=serialization,
        description=description,
    )


def log_model(
    model: Any,
    name: str,
    sample_input: Any = None,
    *,
    flavor: str | None = None,
    trusted: bool = False,
    training_data: Iterable[str | os.PathLike[str]] = (),
    description: str | None = None,
    tags: Mapping[str, Any] | None = None,
    project: str | os.PathLike[str] | None = None,
) -> ModelVersion:
    """Save ``model``, register it as a version of ``name`` and link it to the active run.

    The one-call form of ``save_model`` + ``register_model`` (MLflow's
    ``log_model(..., registered_model_name=...)``).

    Args:
        model: a scikit-learn, XGBoost, LightGBM or ONNX model (any ``predict`` with trust).
        name: the registered model name.
        sample_input: a few training rows for the signature.
        flavor: force a flavor instead of detecting it.
        trusted: allow pickle (the generic Python flavor).
        training_data: files or folders it was trained on (evaluation on them is refused).
        description: the model's description.
        tags: tags of the new version.
        project: a folder in the project (default: the stage's, else the working folder).

    Returns:
        The registered version (the same package again: the existing version).

    Raises:
        ConfigError: no project found.
        UsageError / RegistryError: the model cannot be saved or registered.
    """
    from mlcd.registry import project_context, register_from_path

    lineage = _run_lineage(None)
    store, objects, _cache = project_context(project)
    with tempfile.TemporaryDirectory(prefix="mlcd-log-model-") as folder:
        package = Path(folder) / name
        save_model(
            model,
            package,
            sample_input,
            flavor,
            trusted=trusted,
            lineage=lineage,
            training_data=training_data,
            description=description,
        )
        run_id = lineage.get("run_id")
        registration = register_from_path(
            store,
            objects,
            name,
            package,
            run_id=run_id,
            source=f"log_model:run:{run_id}" if run_id else "log_model",
            tags=tags,
            description=description,
        )
    return registration.version


@dataclass(frozen=True)
class Registered:
    """One declared model after a run."""

    model: str
    version: int | None
    created: bool
    reference_digest: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _reference_frame(root: Path, path: str, package: Path, target: str | None) -> Any:
    """The reference table with the model's predictions (for prediction drift)."""
    from mlcd.evaluate.evaluation import read_table
    from mlcd.registry import load_model

    frame = read_table(root / path)
    model = load_model(package)
    inputs = frame[[c for c in model.signature.columns if c in frame.columns]]
    if len(inputs.columns) == len(model.signature.columns):
        frame = frame.copy()
        frame["prediction"] = model.predict(inputs)
        proba = model.predict_proba(inputs)
        if proba is not None and getattr(proba, "ndim", 1) == 2 and proba.shape[1] == 2:
            frame["proba"] = proba[:, 1]
    if target and target in frame.columns:
        frame = frame.drop(columns=[target])
    kinds = {c.name: c.kind for c in model.signature.inputs if c.kind in ("numeric", "categorical")}
    return frame, kinds


def _set_reference(store: Store, name: str, version: int, digest: str) -> None:
    from mlcd.store import models as repo

    store.transact(lambda conn: repo.update_version(conn, name, version, reference_digest=digest))


def profile_reference(
    root: Path,
    config: Config,
    store: Store,
    objects: ObjectStore,
    name: str,
    version: int,
    package: Path,
) -> tuple[str | None, str | None]:
    """Store the profile of ``name``'s declared reference data for a version that has none.

    Used after ``mlcd run`` and ``mlcd models register`` alike. Returns the version's reference
    digest (``None`` when nothing is declared) and a note when profiling failed (the version
    stands; monitoring will say it has no reference).
    """
    from mlcd.monitor import compute_reference_profile
    from mlcd.store import models as repo

    with store.read() as conn:
        reference = repo.get_version(conn, name, version).get("reference_digest")
    spec = config.models.get(name)
    source = (spec.reference_data if spec else None) or config.monitor.reference
    if reference is not None or not source:
        return reference, None
    try:
        frame, kinds = _reference_frame(root, source, package, spec.target if spec else None)
        digest = str(compute_reference_profile(frame, objects, kinds=kinds))
    except MlcdError as exc:
        note = f"no reference profile: {exc.message}"
        log.warning("%s v%s: %s", name, version, note)
        return None, note
    _set_reference(store, name, version, digest)
    return digest, None


def champion(name: str, alias: str = "champion") -> Path | None:
    """The package folder of ``name@alias`` to continue training from, or None if none yet.

    Inside a stage with ``warm_start: {model: NAME}`` this is the version mlcd resolved for
    the stage (``MLCD_WARM_START``; the package the stage saves records it as its parent);
    elsewhere the alias is resolved in the project's store. Load it with
    ``mlcd.load_model(path, trusted=True).raw`` for the native estimator (``partial_fit``,
    ``warm_start``) or pass ``path / "model.txt"`` to LightGBM's ``init_model``.
    """
    from mlcd.errors import NotFound
    from mlcd.registry import fetch, project_context, resolve
    from mlcd.registry.context import default_cache_dir

    if os.environ.get("MLCD_WARM_START_MODEL") == name and "MLCD_WARM_START" in os.environ:
        value = os.environ["MLCD_WARM_START"]
        return Path(value) if value else None
    store, objects, _root = project_context()
    try:
        version = resolve(store, f"{name}@{alias}")
    except NotFound:
        return None
    return fetch(objects, version, default_cache_dir())


def record_eval_window(
    root: Path, config: Config, store: Store, objects: ObjectStore, name: str, version: int
) -> str | None:
    """Keep the model's declared ``eval_data`` as a data window of this version.

    The no-forgetting gate scores later candidates on every such window. Returns a note when
    the data could not be recorded (the version stands either way).
    """
    from mlcd.logdata.windows import record_window

    spec = config.models.get(name)
    if spec is None or not spec.eval_data or not (root / spec.eval_data).is_file():
        return None
    try:
        record_window(
            store,
            objects,
            name,
            root / spec.eval_data,
            role="eval",
            name=f"v{version} {spec.eval_data}",
            version=version,
            source=spec.eval_data,
        )
    except MlcdError as exc:
        log.warning("%s v%s: eval window not recorded: %s", name, version, exc.message)
        return f"no eval window: {exc.message}"
    return None


def register_declared_models(
    root: Path,
    config: Config,
    store: Store,
    objects: ObjectStore,
    run_id: str | None = None,
    models: Iterable[str] | None = None,
    say: Callable[[str], None] | None = None,
) -> list[Registered]:
    """Register each declared model's package folder; profile the reference of new versions.

    A model whose folder does not exist yet is skipped with a note; a folder that is not a
    valid package raises (the run produced something the registry refuses).
    """
    from mlcd.registry import register_from_path

    say = say or (lambda _line: None)
    out = []
    for name in models or list(config.models):
        spec = config.models[name]
        package = root / spec.path
        if not (package / "model.yaml").is_file():
            out.append(
                Registered(name, None, False, note=f"{spec.path} holds no model package yet")
            )
            continue
        registration = register_from_path(
            store,
            objects,
            name,
            package,
            run_id=run_id,
            source=f"{spec.stage or 'path'}:{spec.path}",
            description=spec.description,
        )
        version = registration.version
        reference, note = profile_reference(
            root, config, store, objects, name, version.version, package
        )
        note = note or record_eval_window(root, config, store, objects, name, version.version)
        verb = "registered" if registration.created else "already registered as"
        say(f"{name}: {verb} v{version.version}" + (f" ({note})" if note else ""))
        out.append(Registered(name, version.version, registration.created, reference, note))
    return out
