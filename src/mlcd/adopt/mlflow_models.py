"""Registered models from MLflow: versions, aliases, tags and descriptions into mlcd's registry.

Each MLflow version becomes an mlcd version of the model with the same name, tagged
``mlflow.version`` (its MLflow number, which is how a re-import recognises it: converted
packages are not byte-identical from one conversion to the next), ``mlflow.source`` and
``mlflow.run_id``, plus the version's own tags, the model's tags and the version's
description (``mlflow.description``). mlcd numbers versions itself; aliases are set through
the MLflow-to-mlcd number mapping. An alias that already exists in mlcd is left where it is
(it may have been promoted since), and the summary says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.adopt.mlflow_convert import Refused, convert
from mlcd.adopt.mlflow_runs import mlcd_run_id
from mlcd.adopt.mlflow_source import MlflowSource, SourceModel, SourceVersion
from mlcd.errors import MlcdError, UsageError
from mlcd.objects import ObjectStore
from mlcd.registry import register_from_path, set_alias, tag
from mlcd.registry.versions import check_alias, check_name
from mlcd.store import Store
from mlcd.store import models as model_repo

VERSION_TAG = "mlflow.version"
#: Further MLflow versions that registered the very same package as this mlcd version.
ALSO_TAG = "mlflow.versions"


@dataclass
class ModelOutcome:
    """What happened to one registered model."""

    name: str
    imported: list[dict[str, Any]] = field(default_factory=list)
    already: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    aliases_set: dict[str, int] = field(default_factory=dict)
    aliases_kept: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "imported": self.imported,
            "already_imported": self.already,
            "refused": self.refused,
            "aliases_set": self.aliases_set,
            "aliases_kept": self.aliases_kept,
            "error": self.error,
        }


def _mapping(store: Store, name: str) -> dict[int, int]:
    """``{MLflow version: mlcd version}`` of versions imported before."""
    with store.read() as conn:
        try:
            model_repo.get_model(conn, name)
        except MlcdError:
            return {}
        rows = model_repo.versions_of(conn, name)
    found: dict[int, int] = {}
    for row in rows:
        tags = row.get("tags") or {}
        numbers = [tags.get(VERSION_TAG), *str(tags.get(ALSO_TAG) or "").split(",")]
        for number in numbers:
            if number is not None and str(number).strip().isdigit():
                found.setdefault(int(str(number).strip()), int(row["version"]))
    return found


def _imported_runs(store: Store, run_ids: Sequence[str]) -> set[str]:
    from sqlalchemy import select

    from mlcd.store.tables import runs

    ids = list({mlcd_run_id(r) for r in run_ids})
    if not ids:
        return set()
    with store.read() as conn:
        return {r for (r,) in conn.execute(select(runs.c.id).where(runs.c.id.in_(ids)))}


def import_models(
    source: MlflowSource,
    store: Store,
    objects: ObjectStore,
    *,
    names: Sequence[str] = (),
    trust: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[ModelOutcome]:
    """Import registered models (all, or ``names``) with their versions and aliases.

    Raises:
        UsageError: a named model does not exist in the MLflow registry.
        TrackingError: the MLflow registry cannot be read.
    """
    models = source.registered_models(names)
    total = sum(len(m.versions) for m in models)
    done = 0
    known_runs = _imported_runs(store, [v.run_id for m in models for v in m.versions if v.run_id])
    outcomes: list[ModelOutcome] = []
    for model in models:
        outcome = ModelOutcome(model.name)
        outcomes.append(outcome)
        try:
            check_name(model.name)
        except UsageError as exc:
            outcome.error = f"{exc.message}: not imported (rename it in MLflow first)"
            done += len(model.versions)
            continue
        mapping = _mapping(store, model.name)
        for version in model.versions:
            _version(source, store, objects, model, version, mapping, known_runs, trust, outcome)
            done += 1
            if progress is not None:
                progress("models", done, total)
        _aliases(store, model, mapping, outcome)
    return outcomes


def _version(
    source: MlflowSource,
    store: Store,
    objects: ObjectStore,
    model: SourceModel,
    version: SourceVersion,
    mapping: dict[int, int],
    known_runs: set[str],
    trust: bool,
    outcome: ModelOutcome,
) -> None:
    if version.version in mapping:
        outcome.already += 1
        return
    if version.status != "READY":
        outcome.refused.append(
            {"version": version.version, "reason": f"MLflow status {version.status}"}
        )
        return
    run_id = mlcd_run_id(version.run_id) if version.run_id else None
    run_id = run_id if run_id in known_runs else None
    tags: dict[str, Any] = {**model.tags, **version.tags}
    tags[VERSION_TAG] = str(version.version)
    tags["mlflow.source"] = version.source
    if version.run_id:
        tags["mlflow.run_id"] = version.run_id
    if version.description:
        tags["mlflow.description"] = version.description
    try:
        with tempfile.TemporaryDirectory(prefix="mlcd-mlflow-model-") as tmp:
            files = source.folder(source.version_uri(version), Path(tmp) / "mlflow")
            converted = convert(
                files,
                Path(tmp) / "package",
                trust=trust,
                lineage={"run_id": run_id} if run_id else {},
                description=model.description,
            )
            registration = register_from_path(
                store,
                objects,
                model.name,
                converted.path,
                run_id=run_id,
                source=f"mlflow:models:/{model.name}/{version.version}",
                tags=tags,
                description=model.description,
            )
    except Refused as exc:
        outcome.refused.append({"version": version.version, "reason": exc.message})
        return
    except MlcdError as exc:
        outcome.refused.append(
            {"version": version.version, "reason": f"{type(exc).__name__}: {exc.message}"}
        )
        return
    number = registration.version.version
    mapping[version.version] = number
    if not registration.created:
        # MLflow registered the same package twice: remember this number too.
        also = str(registration.version.tags.get(ALSO_TAG) or "")
        numbers = [n for n in also.split(",") if n] + [str(version.version)]
        tag(store, model.name, number, {ALSO_TAG: ",".join(numbers)})
    outcome.imported.append(
        {
            "mlflow_version": version.version,
            "version": number,
            "flavor": converted.flavor,
            "needs_trust": converted.needs_trust,
            "note": converted.note,
        }
    )


def _aliases(
    store: Store, model: SourceModel, mapping: dict[int, int], outcome: ModelOutcome
) -> None:
    if not model.aliases:
        return
    with store.read() as conn:
        try:
            current = model_repo.aliases_of(conn, model.name)
        except MlcdError:
            current = {}
    for alias, mlflow_version in sorted(model.aliases.items()):
        target = mapping.get(mlflow_version)
        if target is None:
            outcome.refused.append(
                {
                    "alias": alias,
                    "reason": f"points at MLflow version {mlflow_version}, which was not imported",
                }
            )
            continue
        try:
            check_alias(alias)
        except UsageError as exc:
            outcome.refused.append({"alias": alias, "reason": exc.message})
            continue
        if alias in current:
            if current[alias] != target:
                outcome.aliases_kept[alias] = {"mlcd": current[alias], "mlflow": target}
            continue
        set_alias(
            store,
            model.name,
            alias,
            target,
            reason="imported from MLflow",
            details={"mlflow_version": mlflow_version},
        )
        outcome.aliases_set[alias] = target
