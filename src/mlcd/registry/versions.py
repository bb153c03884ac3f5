"""Model versions and aliases: register, resolve, move, roll back, tag.

A version is a package folder stored in the object store (its ``.dir`` digest) plus a row in
``model_versions``. Registering the same package twice returns the existing version. Every
alias move is an audit event in the same transaction as the move, so the history can be
replayed: rollback walks it back one step at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from mlcd.digest import Digest
from mlcd.errors import NotFound, RegistryError, UsageError
from mlcd.objects import ObjectStore
from mlcd.registry.package import ModelPackage
from mlcd.store import Store, events
from mlcd.store import models as repo

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
#: ``name@latest`` means the newest version; no alias may take this name.
LATEST = "latest"
ALIAS_KINDS = ("alias.set", "alias.rollback", "alias.delete")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    digest: str
    run_id: str | None = None
    source: str | None = None
    flavor: str | None = None
    created_at: float = 0.0
    created_by: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``name/version``."""
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "run_id": self.run_id,
            "source": self.source,
            "flavor": self.flavor,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "tags": self.tags,
            "metrics": self.metrics,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelVersion:
        """Build from a ``model_versions`` row."""
        return cls(
            name=str(row["model"]),
            version=int(row["version"]),
            digest=str(row["digest"]),
            run_id=row.get("run_id"),
            source=row.get("source"),
            flavor=row.get("flavor"),
            created_at=float(row.get("created_at") or 0.0),
            created_by=row.get("created_by"),
            tags=dict(row.get("tags") or {}),
            metrics=dict(row.get("metrics") or {}),
        )


@dataclass(frozen=True)
class Registration:
    """The outcome of registering a package: the version and whether it is new."""

    version: ModelVersion
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.version.to_dict(), "created": self.created}


@dataclass(frozen=True)
class AliasMove:
    """An alias moved from one version (None: it was unset) to another."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    event_id: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "event_id": self.event_id,
        }


def check_name(name: str) -> str:
    """Validate a model name.

    Raises:
        UsageError: it has characters a reference cannot carry.
    """
    if not _NAME.match(name):
        raise UsageError(
            f"invalid model name {name!r}",
            hint="use letters, digits, '.', '_' and '-' (no '@' or '/'), starting with a "
            "letter or digit",
        )
    return name


def check_alias(alias: str) -> str:
    """Validate an alias name.

    Raises:
        UsageError: not a valid alias.
    """
    if not _ALIAS.match(alias) or alias == LATEST:
        raise UsageError(
            f"invalid alias {alias!r}",
            hint="an alias starts with a letter and has letters, digits, '_' or '-'; "
            f"'{LATEST}' is reserved",
        )
    return alias


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """Split ``name@alias`` / ``name/3`` / ``name`` into (name, alias, version).

    Raises:
        UsageError: the reference is malformed.
    """
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if alias != LATEST:
            check_alias(alias)
        return check_name(name), alias, None
    if "/" in ref:
        name, number = ref.rsplit("/", 1)
        if not number.isdigit() or not 1 <= int(number) < 2**63:
            raise UsageError(
                f"invalid model reference {ref[:200]!r}: version must be a positive number "
                "(below 2**63)",
                hint="use 'name/3', 'name@champion' or a package folder path",
            )
        return check_name(name), None, int(number)
    return check_name(ref), None, None


def is_ref(text: str) -> bool:
    """Whether ``text`` looks like a registry reference rather than a folder path."""
    if os.path.isdir(text):
        return False
    try:
        _name, alias, version = parse_ref(text)
    except UsageError:
        return False
    return alias is not None or version is not None


# ---------------------------------------------------------------- registering
def register_from_path(
    store: Store,
    objects: ObjectStore,
    name: str,
    path: str | os.PathLike[str],
    run_id: str | None = None,
    source: str | None = None,
    *,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    actor: str | None = None,
) -> Registration:
    """Register the package folder at ``path`` as a version of ``name``.

    The package is verified, stored in ``objects`` (its ``.dir`` digest is the version's
    identity) and recorded. The same package registered again returns the existing version.

    Args:
        store: the metadata store.
        objects: the object store that keeps the package.
        name: the model name.
        path: a folder written by ``save_model``.
        run_id: the run that made it (default: the run in the package's lineage).
        source: where it came from, e.g. the stage out path.
        tags: initial tags of a new version.
        description: the model's description, set if it has none yet.
        actor: who registers (default: ``MLCD_ACTOR``, CI identity or the user).

    Returns:
        The version and whether it was created.

    Raises:
        UsageError: invalid model name.
        RegistryError / UnsafeModel: not a package, or it fails verification.
    """
    check_name(name)
    package = ModelPackage.read(path, verify=True)
    # model.yaml's digests were checked a moment ago: no need to hash the files twice.
    known = {entry.path: Digest(entry.digest) for entry in package.files.values()}
    digest = str(objects.put_dir(Path(path), known=known))
    run_id = run_id or package.lineage.get("run_id")
    who = actor or events.actor()

    def work(conn: Connection) -> Registration:
        repo.ensure_model(conn, name, description or package.description)
        repo.lock_model(conn, name)
        existing = repo.find_by_digest(conn, name, digest)
        if existing is not None:
            return Registration(ModelVersion.from_row(existing), created=False)
        number = repo.allocate_version(conn, name)
        repo.insert_version(
            conn,
            name,
            number,
            digest=digest,
            run_id=run_id,
            source=source,
            flavor=package.flavor,
            created_by=who,
            tags=dict(tags or {}),
            metrics={},
        )
        events.record(
            conn,
            "version.registered",
            model=name,
            version=number,
            run_id=run_id,
            actor=who,
            details={"digest": digest, "source": source, "flavor": package.flavor},
        )
        return Registration(ModelVersion.from_row(repo.get_version(conn, name, number)), True)

    return store.transact(work)


# ---------------------------------------------------------------- reading
def resolve(store: Store, ref: str) -> ModelVersion:
    """The version a reference names: ``name@alias``, ``name@latest``, ``name/3``.

    Raises:
        UsageError: a malformed reference, or a bare name.
        NotFound: the model, version or alias does not exist.
    """
    name, alias, version = parse_ref(ref)
    with store.read() as conn:
        if alias == LATEST:
            rows = repo.versions_of(conn, name)
            if not rows:
                repo.get_model(conn, name)
                raise NotFound(f"model '{name}' has no versions yet")
            return ModelVersion.from_row(rows[-1])
        if alias is not None:
            row = repo.resolve_alias(conn, name, alias)
            if row is None:
                repo.get_model(conn, name)
                aliases = repo.aliases_of(conn, name)
                known = ", ".join(f"{a}->{v}" for a, v in aliases.items()) or "none"
                raise NotFound(
                    f"model '{name}' has no alias '{alias}' (aliases: {known})",
                    hint=f"set it with 'mlcd models promote {name} VERSION --alias {alias}'",
                )
            return ModelVersion.from_row(row)
        if version is None:
            raise UsageError(
                f"'{ref}' names a model, not a version",
                hint=f"use '{ref}@champion', '{ref}@latest' or '{ref}/VERSION'",
            )
        return ModelVersion.from_row(repo.get_version(conn, name, version))


def get_version(store: Store, name: str, version: int) -> ModelVersion:
    """One version.

    Raises:
        NotFound: the model or version does not exist.
    """
    with store.read() as conn:
        return ModelVersion.from_row(repo.get_version(conn, name, version))


def list_models(store: Store) -> list[dict[str, Any]]:
    """Every model with its version count, latest version and aliases."""
    with store.read() as conn:
        rows = repo.list_models(conn)
        for row in rows:
            row["aliases"] = repo.aliases_of(conn, row["name"])
    return rows


def describe(store: Store, name: str) -> dict[str, Any]:
    """A model with its versions and aliases.

    Raises:
        NotFound: no such model.
    """
    with store.read() as conn:
        model = repo.get_model(conn, name)
        versions = [ModelVersion.from_row(r) for r in repo.versions_of(conn, name)]
        aliases = repo.aliases_of(conn, name)
    return {
        "name": name,
        "description": model.get("description"),
        "created_at": model.get("created_at"),
        "aliases": aliases,
        "versions": [v.to_dict() for v in versions],
    }


def history(store: Store, name: str, alias: str | None = None) -> list[dict[str, Any]]:
    """Audit events of a model (registrations, alias moves, tags, gates), newest first.

    Raises:
        NotFound: no such model.
    """
    with store.read() as conn:
        repo.get_model(conn, name)
        rows = events.query(conn, model=name)
    if alias is not None:
        rows = [r for r in rows if r.get("alias") == alias]
    return rows


# ---------------------------------------------------------------- aliases
def move_alias(
    conn: Connection,
    name: str,
    alias: str,
    version: int,
    *,
    kind: str = "alias.set",
    reason: str | None = None,
    report_digest: str | None = None,
    actor: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version`` and record the event, inside the caller's transaction.

    Raises:
        NotFound: the model or version does not exist.
    """
    check_alias(alias)
    repo.get_version(conn, name, version)
    before = repo.get_alias(conn, name, alias)
    repo.set_alias(conn, name, alias, version)
    event_id = events.record(
        conn,
        kind,
        model=name,
        version=version,
        alias=alias,
        from_version=before,
        actor=actor or events.actor(),
        reason=reason,
        report_digest=report_digest,
        details=dict(details or {}),
    )
    return AliasMove(name, alias, before, version, event_id)


def set_alias(
    store: Store,
    name: str,
    alias: str,
    version: int,
    *,
    reason: str | None = None,
    report_digest: str | None = None,
    actor: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version`` with no gates (promotion with gates is in evaluate).

    Raises:
        NotFound: the model or version does not exist.
        UsageError: an invalid alias name.
    """
    return store.transact(
        lambda conn: move_alias(
            conn,
            name,
            alias,
            version,
            reason=reason,
            report_digest=report_digest,
            actor=actor,
            details=details,
        )
    )


def alias_targets(conn: Connection, name: str, alias: str) -> list[int]:
    """The alias's targets as a stack, replayed from its events (the last is current)."""
    stack: list[int] = []
    moves = [r for r in events.query(conn, model=name, kind="alias.*") if r.get("alias") == alias]
    for event in reversed(moves):  # oldest first
        if event["kind"] == "alias.set":
            stack.append(int(event["version"]))
        elif event["kind"] == "alias.rollback" and stack:
            stack.pop()
        elif event["kind"] == "alias.delete":
            stack.clear()
    return stack


def rollback(
    store: Store,
    name: str,
    alias: str = "champion",
    *,
    reason: str | None = None,
    actor: str | None = None,
) -> AliasMove:
    """Move ``alias`` back to the version it pointed at before its last move.

    Raises:
        NotFound: the model or alias does not exist.
        RegistryError: the alias has no earlier target to go back to.
    """
    check_alias(alias)

    def work(conn: Connection) -> AliasMove:
        current = repo.get_alias(conn, name, alias)
        if current is None:
            repo.get_model(conn, name)
            raise NotFound(f"model '{name}' has no alias '{alias}' to roll back")
        stack = alias_targets(conn, name, alias)
        if len(stack) < 2:
            raise RegistryError(
                f"alias '{alias}' of model '{name}' has no earlier version to roll back to "
                f"(it points at {current} and has only ever pointed there)",
                hint=f"promote another version instead: 'mlcd models promote {name} VERSION "
                f"--alias {alias}'",
            )
        target = stack[-2]
        return move_alias(
            conn,
            name,
            alias,
            target,
            kind="alias.rollback",
            reason=reason,
            actor=actor,
            details={"rolled_back": current},
        )

    return store.transact(work)


def delete_alias(
    store: Store, name: str, alias: str, *, reason: str | None = None, actor: str | None = None
) -> AliasMove:
    """Remove an alias (recorded, so its history starts afresh if it is set again).

    Raises:
        NotFound: the model or alias does not exist.
    """

    def work(conn: Connection) -> AliasMove:
        current = repo.get_alias(conn, name, alias)
        if current is None:
            repo.get_model(conn, name)
            raise NotFound(f"model '{name}' has no alias '{alias}'")
        repo.delete_alias(conn, name, alias)
        event_id = events.record(
            conn,
            "alias.delete",
            model=name,
            alias=alias,
            from_version=current,
            actor=actor or events.actor(),
            reason=reason,
        )
        return AliasMove(name, alias, current, None, event_id)

    return store.transact(work)


# ---------------------------------------------------------------- tags and metrics
def tag(
    store: Store,
    name: str,
    version: int,
    set_: Mapping[str, Any] | None = None,
    remove: Sequence[str] = (),
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """Set and remove tags of a version; returns its tags afterwards.

    Raises:
        NotFound: the model or version does not exist.
    """

    def work(conn: Connection) -> dict[str, Any]:
        tags = repo.merge_tags(conn, name, version, dict(set_ or {}), list(remove))
        events.record(
            conn,
            "version.tagged",
            model=name,
            version=version,
            actor=actor or events.actor(),
            details={"set": dict(set_ or {}), "removed": list(remove)},
        )
        return tags

    return store.transact(work)


def record_metrics(store: Store, name: str, version: int, metrics: Mapping[str, Any]) -> None:
    """Keep the latest evaluation metrics of a version (the baseline monitoring compares to)."""
    store.transact(lambda conn: repo.update_version(conn, name, version, metrics=dict(metrics)))


def register_model(
    name: str,
    path: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    source: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Registration:
    """Register a package folder in the project around the working folder (or the stage's).

    The convenience form of :func:`register_from_path` for notebooks and stage scripts.

    Raises:
        ConfigError: no project found.
        RegistryError / UnsafeModel: the folder is not a valid package.
    """
    from mlcd.registry.context import project_context

    store, objects, _cache = project_context()
    return register_from_path(
        store,
        objects,
        name,
        path,
        run_id=run_id or os.environ.get("MLCD_RUN_ID"),
        source=source or str(path),
        tags=tags,
    )
