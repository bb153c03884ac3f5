"""``mlcd data import`` / ``mlcd data update``: data from outside the project, tracked by a pointer.

``mlcd data import 's3://bucket/events/' data/events`` (or a database URL with ``--query``)
reads the source into the project (:mod:`mlcd.sources`), stores it like ``mlcd data add`` and
writes a pointer file that also says where it came from. ``mlcd data update`` reads the sources
of such pointers again and re-tracks what changed; ``mlcd data status`` says, with the same
cheap checks (a freshness query, an object listing), whether a source moved upstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import UsageError
from mlcd.pipeline.data import Pointer, add_data, find_pointers
from mlcd.pipeline.statcache import StatCache

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.store import Store

_DATABASES = ("postgresql", "postgres", "sqlite", "mysql", "mariadb", "mssql", "oracle", "duckdb")


def source_item(
    url: str,
    path: str,
    query: str | None = None,
    freshness: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A source description from command-line arguments.

    Raises:
        UsageError: a database URL without a query, a query for a file URL, or a password
            written in the URL (credentials come from the environment: ``${NAME}``).
    """
    from mlcd.secrets import secrets_in_url

    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if not scheme and not url.startswith("${"):
        raise UsageError(
            f"{url!r} is not a URL", hint="give s3://bucket/key, https://..., or a database URL"
        )
    if secrets_in_url(url):
        raise UsageError(
            "the URL holds a password: it would be written into the pointer file you commit",
            hint="put it in the environment and write ${NAME} in its place, e.g. "
            "postgresql://me:${SHOP_PASSWORD}@db/shop",
        )
    database = scheme in _DATABASES or url.startswith("${")
    if database and query is None:
        raise UsageError(
            f"{scheme or 'a database'} URL needs --query 'select ...'",
            hint="the query's result is stored as Parquet (add 'order by' for a stable digest)",
        )
    if not database and query is not None:
        raise UsageError(f"--query is for database URLs, not {scheme}://")
    kind = "sql" if database else "url"
    return {
        "kind": kind,
        "path": path,
        "url": url,
        "query": query,
        "freshness": freshness,
        "options": dict(options or {}),
    }


def import_data(
    root: Path,
    store: Store,
    objects: ObjectStore,
    statcache: StatCache,
    item: dict[str, Any],
    produced: dict[str, str] | None = None,
) -> tuple[Pointer, bool, dict[str, Any]]:
    """Read the source into ``item['path']`` and track it; ``(pointer, changed, fetched)``."""
    from mlcd.sources import materialize

    fetched = materialize(store, root, item)
    source = {k: item.get(k) for k in ("kind", "url", "query", "freshness", "options")}
    pointer, changed = add_data(root, [root / item["path"]], objects, statcache, produced, source)[
        0
    ]
    return pointer, changed, fetched.to_dict()


def update_data(
    root: Path,
    store: Store,
    objects: ObjectStore,
    statcache: StatCache,
    targets: Iterable[str] = (),
    produced: dict[str, str] | None = None,
) -> list[tuple[Pointer, bool, dict[str, Any]]]:
    """Read every imported pointer's source again (or those of ``targets``) and re-track it.

    Raises:
        UsageError: a target is not imported data.
    """
    imported = {p.path: p for p in find_pointers(root) if p.source}
    wanted = [_relative(root, t) for t in targets] or sorted(imported)
    unknown = [t for t in wanted if t not in imported]
    if unknown:
        raise UsageError(
            f"not imported data: {', '.join(unknown)}",
            hint="'mlcd data update' refreshes what 'mlcd data import' tracked; imported: "
            + (", ".join(sorted(imported)) or "none"),
        )
    return [
        import_data(root, store, objects, statcache, {**imported[t].source, "path": t}, produced)  # type: ignore[dict-item]
        for t in wanted
    ]


def upstream_status(root: Path, store: Store, pointer: Pointer) -> str:
    """``changed`` / ``unchanged`` upstream since the last import, or ``unknown`` (no cheap
    check: a query without ``freshness``) — without downloading anything."""
    from mlcd.sources.read import upstream_changed

    if not pointer.source:
        return "unknown"
    moved = upstream_changed(store, root, {**pointer.source, "path": pointer.path})
    return "unknown" if moved is None else ("changed" if moved else "unchanged")


def _relative(root: Path, target: str) -> str:
    path = Path(target)
    full = path if path.is_absolute() else Path.cwd() / path
    try:
        return full.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{target} is outside the project {root}") from None
