"""Repository of the model registry: models, their numbered versions, and aliases.

Version numbers are handed out from ``models.next_version`` inside the caller's write
transaction: :func:`lock_model` takes the model row's lock first (``SELECT ... FOR UPDATE``
on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers), so that the
check "is this digest already a version?" and the allocation of the next number happen as
one step. A rolled-back transaction gives its number back, so numbers stay gap-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from mlcd.errors import NotFound
from mlcd.store.sql import now, upsert
from mlcd.store.tables import model_aliases, model_versions, models


def ensure_model(conn: Connection, name: str, description: str | None = None) -> None:
    """Create the model row if it does not exist (a concurrent creator is harmless)."""
    upsert(
        conn,
        models,
        [{"name": name, "created_at": now(), "description": description, "next_version": 1}],
        ["name"],
    )
    if description is not None:
        conn.execute(
            update(models)
            .where(models.c.name == name, models.c.description.is_(None))
            .values(description=description)
        )


def lock_model(conn: Connection, name: str) -> dict[str, Any]:
    """The model row, locked until the transaction ends.

    Raises:
        NotFound: no model of that name.
    """
    stmt = select(models).where(models.c.name == name)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise _no_model(conn, name)
    return dict(row)


def allocate_version(conn: Connection, name: str) -> int:
    """Take the next version number of ``name`` (call after :func:`lock_model`)."""
    result = conn.execute(
        update(models)
        .where(models.c.name == name)
        .values(next_version=models.c.next_version + 1)
        .returning(models.c.next_version)
    ).scalar_one()
    return int(result) - 1


def insert_version(conn: Connection, name: str, version: int, **values: Any) -> None:
    """Insert a version row (``digest`` and friends in ``values``)."""
    values.setdefault("created_at", now())
    conn.execute(model_versions.insert().values(model=name, version=version, **values))


def get_model(conn: Connection, name: str) -> dict[str, Any]:
    """The model row.

    Raises:
        NotFound: no model of that name.
    """
    row = conn.execute(select(models).where(models.c.name == name)).mappings().first()
    if row is None:
        raise _no_model(conn, name)
    return dict(row)


def list_models(conn: Connection) -> list[dict[str, Any]]:
    """Every model with its latest version number and version count."""
    latest = (
        select(
            model_versions.c.model,
            func.max(model_versions.c.version).label("latest"),
            func.count().label("versions"),
        )
        .group_by(model_versions.c.model)
        .subquery()
    )
    stmt = (
        select(models, latest.c.latest, latest.c.versions)
        .outerjoin(latest, latest.c.model == models.c.name)
        .order_by(models.c.name)
    )
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    for row in rows:
        row["versions"] = int(row["versions"] or 0)
    return rows


def get_version(conn: Connection, name: str, version: int) -> dict[str, Any]:
    """One version row.

    Raises:
        NotFound: the model or the version does not exist.
    """
    row = (
        conn.execute(
            select(model_versions).where(
                model_versions.c.model == name, model_versions.c.version == version
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        get_model(conn, name)  # raises a clearer error when the model itself is missing
        known = versions_of(conn, name)
        numbers = ", ".join(str(v["version"]) for v in known[-10:]) or "none"
        raise NotFound(
            f"model '{name}' has no version {version} (versions: {numbers})",
            hint=f"list them with 'mlcd models show {name}'",
        )
    return dict(row)


def find_by_digest(conn: Connection, name: str, digest: str) -> dict[str, Any] | None:
    """The version of ``name`` whose package has ``digest``, or None."""
    row = (
        conn.execute(
            select(model_versions).where(
                model_versions.c.model == name, model_versions.c.digest == digest
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def versions_of(conn: Connection, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, oldest first."""
    stmt = (
        select(model_versions)
        .where(model_versions.c.model == name)
        .order_by(model_versions.c.version)
    )
    return [dict(r) for r in conn.execute(stmt).mappings()]


def update_version(conn: Connection, name: str, version: int, **values: Any) -> None:
    """Change columns of a version (tags, metrics, reference digest)."""
    conn.execute(
        update(model_versions)
        .where(model_versions.c.model == name, model_versions.c.version == version)
        .values(**values)
    )


def get_alias(conn: Connection, name: str, alias: str) -> int | None:
    """The version ``alias`` points at, or None when it is not set."""
    value = conn.execute(
        select(model_aliases.c.version).where(
            model_aliases.c.model == name, model_aliases.c.alias == alias
        )
    ).scalar()
    return None if value is None else int(value)


def resolve_alias(conn: Connection, name: str, alias: str) -> dict[str, Any] | None:
    """The version row ``alias`` points at (one query), or None when it is not set."""
    stmt = (
        select(model_versions)
        .join(
            model_aliases,
            (model_aliases.c.model == model_versions.c.model)
            & (model_aliases.c.version == model_versions.c.version),
        )
        .where(model_aliases.c.model == name, model_aliases.c.alias == alias)
    )
    row = conn.execute(stmt).mappings().first()
    return dict(row) if row else None


def aliases_of(conn: Connection, name: str) -> dict[str, int]:
    """``{alias: version}`` of a model."""
    rows = conn.execute(
        select(model_aliases.c.alias, model_aliases.c.version)
        .where(model_aliases.c.model == name)
        .order_by(model_aliases.c.alias)
    )
    return {alias: int(version) for alias, version in rows}


def set_alias(conn: Connection, name: str, alias: str, version: int) -> None:
    """Point ``alias`` at ``version`` (creating or moving it)."""
    upsert(
        conn,
        model_aliases,
        [{"model": name, "alias": alias, "version": version, "updated_at": now()}],
        ["model", "alias"],
        ["version", "updated_at"],
    )


def delete_alias(conn: Connection, name: str, alias: str) -> None:
    """Remove an alias."""
    conn.execute(
        delete(model_aliases).where(model_aliases.c.model == name, model_aliases.c.alias == alias)
    )


def merge_tags(
    conn: Connection, name: str, version: int, set_: Mapping[str, Any], remove: list[str]
) -> dict[str, Any]:
    """Set and remove tags of a version; returns the tags after the change."""
    row = get_version(conn, name, version)
    tags = dict(row.get("tags") or {})
    tags.update({str(k): v for k, v in set_.items()})
    for key in remove:
        tags.pop(key, None)
    update_version(conn, name, version, tags=tags)
    return tags


def _no_model(conn: Connection, name: str) -> NotFound:
    import difflib

    names = [r for (r,) in conn.execute(select(models.c.name))]
    close = difflib.get_close_matches(name, names, n=1)
    hint = (
        f"did you mean '{close[0]}'?"
        if close
        else "list models with 'mlcd models list'; register one with 'mlcd models register'"
    )
    return NotFound(f"no model named '{name}'", hint=hint)
