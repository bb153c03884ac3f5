"""Run search planned on PostgreSQL (issue 17): the query shapes and indexes, read from
``EXPLAIN`` of the statements a real search sends to a real server (never from timings).

30,000 runs are written with ``generate_series`` inside the database (seconds, not minutes),
analysed as autovacuum would, then searched through ``tracking.query.search``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from mlcd.tracking.clause import to_sql
from mlcd.tracking.filter import parse_filter
from mlcd.tracking.query import search

pytestmark = pytest.mark.postgres

RUNS = 30_000
MODELS = ("gbm", "rf", "lr", "svm")

SEED = f"""
INSERT INTO runs (id, name, kind, status, started_at, ended_at, "user")
SELECT lpad(to_hex(i), 32, '0'), NULL, 'manual', 'finished', 1e9 + i, 1e9 + i + 1, 'test'
FROM generate_series(0, {RUNS - 1}) AS i;
INSERT INTO run_params (run_id, key, value, value_num)
SELECT lpad(to_hex(i), 32, '0'), p.key, p.value, p.num
FROM generate_series(0, {RUNS - 1}) AS i,
LATERAL (VALUES
  ('model', (ARRAY['gbm', 'rf', 'lr', 'svm'])[i % 4 + 1], NULL::float8),
  ('depth', (2 + (i * 7) % 11)::text, (2 + (i * 7) % 11)::float8),
  ('lr', (ARRAY['0.01', '0.03', '0.1', '0.3'])[(i / 4) % 4 + 1],
         (ARRAY[0.01, 0.03, 0.1, 0.3])[(i / 4) % 4 + 1])
) AS p(key, value, num);
INSERT INTO run_latest_metrics (run_id, key, value, step, timestamp)
SELECT lpad(to_hex(i), 32, '0'), m.key, m.value, 0, 1e9 + i
FROM generate_series(0, {RUNS - 1}) AS i,
LATERAL (VALUES
  ('roc_auc', ((i * 7919) % 10007) / 10007.0),
  ('f1', ((i::bigint * 104729) % 10009) / 10009.0)
) AS m(key, value);
INSERT INTO run_tags (run_id, key, value)
SELECT lpad(to_hex(i), 32, '0'), 'branch', CASE WHEN i % 2 = 0 THEN 'main' ELSE 'dev' END
FROM generate_series(0, {RUNS - 1}) AS i;
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A PostgreSQL store with 30,000 runs, shared by this module's tests."""
    request_pg = pytest.importorskip("psycopg")
    from tests.conftest import PG_ADMIN, _require_pg, worker_id

    _require_pg()
    import uuid

    from mlcd.store import Store

    name = f"mlcd_t_{worker_id()}_{uuid.uuid4().hex[:12]}"
    with request_pg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    store = Store(url)
    try:
        with store.write() as conn:
            conn.execute(text(SEED))
        with request_pg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        yield store
    finally:
        store.dispose()
        with request_pg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _plans(store: Any, filter: str | None, limit: int) -> tuple[list[Any], list[str]]:
    """The runs a search returns and the ``EXPLAIN`` text of every SELECT it sent."""
    sent: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        with store.read() as conn:
            found = search(conn, filter, limit=limit)
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)
    plans = []
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in sent:
            if statement.lstrip().upper().startswith("SELECT"):
                cursor = raw.cursor()
                cursor.execute("EXPLAIN " + statement, parameters)
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return found, plans


def _truth(store: Any, filter: str, limit: int) -> list[str]:
    """The same page from PostgreSQL's own plan of the plain filter (no mlcd planning)."""
    from sqlalchemy import select

    from mlcd.store.tables import runs
    from mlcd.tracking.clause import order_clauses

    stmt = (
        select(runs.c.id)
        .where(to_sql(parse_filter(filter)))
        .order_by(*order_clauses([]))
        .limit(limit)
    )
    with store.read() as conn:
        return [row[0] for row in conn.execute(stmt)]


def _main(plans: list[str]) -> str:
    return next(p for p in plans if "ix_runs_started_at" in p or "pk_runs" in p)


def test_a_metric_and_a_param_walk_the_newest_runs_with_index_only_seeks(searched: Any) -> None:
    where = "metrics.roc_auc > 0.5 and params.model = 'gbm'"  # 1 run in 8 matches: walk
    found, plans = _plans(searched, where, 100)

    assert [r.id for r in found] == _truth(searched, where, 100)
    assert all(r.params["model"] == "gbm" and r.metrics["roc_auc"] > 0.5 for r in found)
    plan = _main(plans)
    assert "Index Scan Backward using ix_runs_started_at on runs" in plan
    assert "Index Only Scan using ix_run_latest_metrics_run_key_value" in plan
    assert "Seq Scan" not in plan


def test_a_narrow_condition_drives_and_runs_are_read_by_key(searched: Any) -> None:
    where = "metrics.roc_auc > 0.99 and params.lr = 0.1"  # ~75 matches of 30,000
    found, plans = _plans(searched, where, 100)

    assert [r.id for r in found] == _truth(searched, where, 100)
    assert found and all(r.params["lr"] == "0.1" for r in found)
    plan = _main(plans)
    assert "Index Only Scan using ix_run_latest_metrics_key_value" in plan  # the driver
    assert "Index Only Scan using ix_run_params_run_key_num" in plan  # the seek per candidate
    assert "Index Scan using pk_runs on runs" in plan  # not a hash join over every run
    assert "Seq Scan" not in plan


def test_the_newest_thousand_load_their_data_by_primary_key_seeks(searched: Any) -> None:
    found, plans = _plans(searched, None, 1000)

    assert len(found) == 1000 and found[0].started_at > found[-1].started_at
    assert found[0].tags == {"branch": "dev"} and set(found[0].params) == {"depth", "lr", "model"}
    data = next(p for p in plans if "unnest" in p)
    for table in ("run_params", "run_latest_metrics", "run_tags"):
        assert f"Seq Scan on {table}" not in data, data
    seeks = re.findall(r"Index (?:Only )?Scan using \w+ on (run_\w+)", data)
    assert sorted(seeks) == ["run_latest_metrics", "run_params", "run_tags"], data
    assert data.count("Nested Loop") == 3  # one seek per run id and table


def test_the_planned_and_the_plain_query_agree_on_every_shape(searched: Any) -> None:
    for where in (
        "params.model = 'rf' and metrics.f1 < 0.2",
        "params.depth >= 11 and metrics.f1 < 0.05",
        "tags.branch = 'main' and params.model in ('gbm', 'rf') and metrics.roc_auc > 0.9",
        "metrics.roc_auc > 0.999 and tags.branch = 'dev'",
    ):
        found, _ = _plans(searched, where, 100)
        assert [r.id for r in found] == _truth(searched, where, 100), where
