"""Generate ``mlcd.store.lite_sql``: the SQL of the stdlib-``sqlite3`` fast path, compiled from
the SQLAlchemy tables in ``mlcd.store.tables`` (the single source of truth).

``python -m mlcd.store.lite_gen > src/mlcd/store/lite_sql.py`` rewrites the module;
``tests/store/test_lite.py`` regenerates it and fails when the checked-in copy differs, so a
changed table cannot leave the fast path writing the old columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Float,
    String,
    bindparam,
    cast,
    column,
    insert,
    literal_column,
    null,
    select,
    table,
    union_all,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mlcd.store import tables as t
from mlcd.store.db import HEAD
from mlcd.store.records import RUN_COLUMNS as ATTRIBUTE_COLUMNS

#: The columns ``runs.create_run`` sets.
RUN_INSERT_COLUMNS = (
    "id",
    "name",
    "kind",
    "status",
    "parent_id",
    "started_at",
    "git_commit",
    "git_dirty",
    "user",
    "heartbeat_at",
)
#: The columns ``queue.enqueue`` sets.
QUEUE_INSERT_COLUMNS = (
    "id",
    "name",
    "kind",
    "settings",
    "base",
    "options",
    "sweep_id",
    "trial",
    "status",
    "attempts",
    "kill_requested",
    "created_at",
)
_DIALECT = sqlite.dialect(paramstyle="qmark")


def _compiled(stmt: Any) -> tuple[str, tuple[str, ...]]:
    compiled = stmt.compile(dialect=_DIALECT)
    return str(compiled), tuple(compiled.positiontup or ())


def _upsert(table: Any, keys: list[str], columns: list[str], where: Any = None) -> Any:
    stmt = sqlite_insert(table).values({c: bindparam(c) for c in [*keys, *columns]})
    return stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c: stmt.excluded[c] for c in columns},
        where=where(stmt.excluded) if where is not None else None,
    )


def statements() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (SQL, the names of its positional parameters in order)."""
    latest = t.run_latest_metrics
    ids: Any = bindparam("ids", expanding=True)
    no_text, no_number = cast(null(), String), cast(null(), Float)
    data = union_all(
        select(
            literal_column("0"),
            t.run_params.c.run_id,
            t.run_params.c.key,
            t.run_params.c.value,
            no_number,
        ).where(t.run_params.c.run_id.in_(ids)),
        select(literal_column("1"), latest.c.run_id, latest.c.key, no_text, latest.c.value).where(
            latest.c.run_id.in_(ids)
        ),
        select(
            literal_column("2"),
            t.run_tags.c.run_id,
            t.run_tags.c.key,
            t.run_tags.c.value,
            no_number,
        ).where(t.run_tags.c.run_id.in_(ids)),
    )
    found = {
        "revision": select(table("alembic_version", column("version_num"))),
        "insert_run": insert(t.runs).values({c: bindparam(c) for c in RUN_INSERT_COLUMNS}),
        "end_run": update(t.runs)
        .where(t.runs.c.id == bindparam("run_id"))
        .values(status=bindparam("status"), ended_at=bindparam("ended_at")),
        "run_exists": select(t.runs.c.id).where(t.runs.c.id == bindparam("run_id")),
        "upsert_param": _upsert(t.run_params, ["run_id", "key"], ["value", "value_num"]),
        "upsert_tag": _upsert(t.run_tags, ["run_id", "key"], ["value"]),
        "insert_metric": insert(t.run_metrics).values(
            {c: bindparam(c) for c in ("run_id", "key", "value", "step", "timestamp")}
        ),
        "upsert_latest_metric": _upsert(
            latest,
            ["run_id", "key"],
            ["value", "step", "timestamp"],
            where=lambda excluded: (
                (excluded.step > latest.c.step)
                | ((excluded.step == latest.c.step) & (excluded.timestamp >= latest.c.timestamp))
            ),
        ),
        "insert_artifact": insert(t.run_artifacts).values(
            {c: bindparam(c) for c in ("run_id", "stage", "role", "path", "digest", "size")}
        ),
        "insert_queue_entry": insert(t.exp_queue).values(
            {c: bindparam(c) for c in QUEUE_INSERT_COLUMNS}
        ),
        "name_queued": select(t.exp_queue.c.id)
        .where(
            t.exp_queue.c.name == bindparam("name"),
            t.exp_queue.c.status.in_([bindparam("queued"), bindparam("running")]),
        )
        .limit(bindparam("limit"))
        .offset(bindparam("offset")),
        "queue_entry": select(t.exp_queue).where(t.exp_queue.c.id == bindparam("id")),
        "run_tagged": select(t.run_tags.c.run_id)
        .where(t.run_tags.c.key == bindparam("key"), t.run_tags.c.value == bindparam("value"))
        .limit(bindparam("limit"))
        .offset(bindparam("offset")),
        "newest_runs": select(*(t.runs.c[name] for name in ATTRIBUTE_COLUMNS))
        .order_by(t.runs.c.started_at.desc(), t.runs.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset")),
    }
    result = {name: _compiled(stmt) for name, stmt in found.items()}
    sql, names = _compiled(data)
    # the expanding list: rendered per call as "?, ?, ..." in place of {ids}
    result["run_data"] = (sql.replace("(__[POSTCOMPILE_ids])", "({ids})"), names)
    return result


def render() -> str:
    """The text of ``mlcd/store/lite_sql.py``."""
    lines = [
        '"""SQL of the stdlib-sqlite3 fast path (``mlcd.store.lite``). GENERATED by',
        "``python -m mlcd.store.lite_gen`` from ``mlcd.store.tables``: do not edit; a test",
        'regenerates it and compares."""',
        "",
        f"HEAD = {HEAD!r}",
        f"RUN_COLUMNS = {tuple(ATTRIBUTE_COLUMNS)!r}",
        "",
        "#: name -> (SQL, names of its positional parameters)",
        "SQL: dict[str, tuple[str, tuple[str, ...]]] = {",
    ]
    for name, (sql, params) in sorted(statements().items()):
        flat = " ".join(sql.split())
        lines.append(f"    {name!r}: (")
        lines.append(f"        {flat!r},")
        lines.append(f"        {params!r},")
        lines.append("    ),")
    lines.append("}")
    return formatted("\n".join(lines) + "\n")


def formatted(text: str) -> str:
    """``text`` as ``ruff format`` writes it (the checked-in module passes the format check)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", "lite_sql.py", "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(render())
