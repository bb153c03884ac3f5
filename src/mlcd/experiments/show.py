"""ExperimentTable: ``mlcd exp show`` — experiments, newest first, against the baseline.

The baseline is the work tree's params and the metrics of the newest pipeline run that is not
an experiment. Each experiment shows the params that any experiment overrode, and its metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.errors import UsageError
from mlcd.experiments.run import TAG_BASE, TAG_EXP, TAG_NAME, TAG_OVERRIDES
from mlcd.tracking.query import RunRecord


@dataclass(frozen=True)
class ExperimentRow:
    """One experiment as the table shows it."""

    name: str
    id: str
    created: float
    status: str
    base: str | None
    overrides: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ExperimentTable:
    """The baseline and the experiments, with the param and metric columns to show."""

    baseline: dict[str, Any]
    experiments: list[ExperimentRow] = field(default_factory=list)
    param_keys: list[str] = field(default_factory=list)
    metric_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "experiments": [e.to_dict() for e in self.experiments],
            "params": self.param_keys,
            "metrics": self.metric_keys,
        }


def experiment_records(conn: Any) -> list[RunRecord]:
    """Every run tagged ``mlcd.exp=1``, newest first, with params, metrics and tags."""
    from sqlalchemy import select

    from mlcd.store.tables import run_tags, runs
    from mlcd.tracking.query import ATTRIBUTE_COLUMNS, load_data

    tagged = select(run_tags.c.run_id).where(run_tags.c.key == TAG_EXP, run_tags.c.value == "1")
    rows = conn.execute(
        select(*(runs.c[n] for n in ATTRIBUTE_COLUMNS))
        .where(runs.c.id.in_(tagged))
        .order_by(runs.c.started_at.desc(), runs.c.id)
    ).all()
    records = [RunRecord(*row) for row in rows]
    return load_data(conn, records) if records else []


def _latest_plain_run(conn: Any) -> RunRecord | None:
    from sqlalchemy import select

    from mlcd.store.tables import run_tags, runs
    from mlcd.tracking.query import ATTRIBUTE_COLUMNS, load_data

    tagged = select(run_tags.c.run_id).where(run_tags.c.key == TAG_EXP)
    row = conn.execute(
        select(*(runs.c[n] for n in ATTRIBUTE_COLUMNS))
        .where(runs.c.kind == "pipeline", runs.c.status == "finished", runs.c.id.not_in(tagged))
        .order_by(runs.c.started_at.desc())
        .limit(1)
    ).first()
    return load_data(conn, [RunRecord(*row)])[0] if row else None


def _row(record: RunRecord) -> ExperimentRow:
    try:
        overrides = json.loads(record.tags.get(TAG_OVERRIDES) or "{}")
    except ValueError:
        overrides = {}
    return ExperimentRow(
        name=record.tags.get(TAG_NAME) or record.id,
        id=record.id,
        created=record.started_at,
        status=record.status,
        base=record.tags.get(TAG_BASE) or None,
        overrides=overrides if isinstance(overrides, dict) else {},
        params=dict(record.params),
        metrics=dict(record.metrics),
    )


def _sort_key(row: ExperimentRow, field_name: str) -> tuple[bool, Any]:
    kind, _, key = field_name.partition(".")
    value: Any = {"metrics": row.metrics, "params": row.params}.get(kind, {}).get(key)
    if kind not in ("metrics", "params"):
        value = getattr(row, field_name, None)
    return (value is None, value if isinstance(value, int | float) else str(value))


def list_experiments(
    root: Path, conn: Any, sort_by: str | None = None, ascending: bool = False
) -> ExperimentTable:
    """The experiments of the project, against the baseline.

    Args:
        root: the project root (its params files are the baseline's params).
        conn: a read connection of the metadata store.
        sort_by: ``metrics.NAME``, ``params.NAME``, ``name``, ``status`` or ``created``
            (default: newest first).
        ascending: smallest first (default: largest first).

    Raises:
        UsageError: an unknown ``sort_by`` field.
    """
    from mlcd.pipeline.record import flat_params
    from mlcd.pipeline.snapshot import load_snapshot

    snapshot = load_snapshot(root)
    rows = [_row(r) for r in experiment_records(conn)]
    param_keys = sorted({k for r in rows for k in r.overrides})
    baseline_params = flat_params(snapshot.params, snapshot.params_file)
    plain = _latest_plain_run(conn)
    metric_keys = sorted({k for r in rows for k in r.metrics} | set(plain.metrics if plain else {}))
    baseline = {
        "name": "workspace",
        "run_id": plain.id if plain else None,
        "params": {k: baseline_params.get(k) for k in param_keys},
        "metrics": dict(plain.metrics) if plain else {},
    }
    if sort_by:
        kind = sort_by.partition(".")[0]
        if kind not in ("metrics", "params") and sort_by not in ("name", "status", "created"):
            raise UsageError(
                f"cannot sort by '{sort_by}'",
                hint="use metrics.NAME, params.NAME, name, status or created",
            )
        present = [r for r in rows if _sort_key(r, sort_by)[0] is False]
        absent = [r for r in rows if _sort_key(r, sort_by)[0] is True]
        present.sort(key=lambda r: _sort_key(r, sort_by)[1], reverse=not ascending)
        rows = present + absent
    for index, row in enumerate(rows):
        params = {k: row.params.get(k) for k in param_keys}
        rows[index] = ExperimentRow(**{**row.__dict__, "params": params})
    return ExperimentTable(baseline, rows, param_keys, metric_keys)
