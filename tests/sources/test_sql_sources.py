"""SQL tables as stage inputs: a changed row re-runs what depends on it, and nothing else.

Real PostgreSQL (a database per test) and SQLite files, the real ``mlcd run`` subprocess. The
database URL comes from the environment (``${SHOP_URL}``): its password must never reach
``mlcd.lock``, the store, events or the command's output.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.conftest import Cli, calls, outcomes, run_json

PASSWORD = "pw-s3cr3t-9f1d"

CONFIG = """
stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py]
    sources:
      - path: data/raw/customers.parquet
        sql:
          url: ${SHOP_URL}
          query: select id, tenure, charges from customers order by id
          FRESHNESS
    outs: [data/clean.parquet]
  report:
    cmd: python report.py
    deps: [report.py]
    outs: [report.txt]
"""

PREPARE = """
import pandas as pd
frame = pd.read_parquet("data/raw/customers.parquet")
frame[frame["charges"] > 0].to_parquet("data/clean.parquet")
open("calls.log", "a").write("prepare\\n")
"""

REPORT = """
open("report.txt", "w").write("ok")
open("calls.log", "a").write("report\\n")
"""


def _project(make_project: Cli, freshness: bool) -> Path:
    line = "freshness: select max(updated) from customers" if freshness else ""
    return make_project(
        CONFIG.replace("FRESHNESS", line), {"prepare.py": PREPARE, "report.py": REPORT}
    )


def _fill(execute, rows: int = 200) -> None:  # type: ignore[no-untyped-def]
    execute(
        "create table customers (id integer primary key, tenure integer, charges real, updated integer)"
    )
    for i in range(rows):
        execute(f"insert into customers values ({i}, {i % 72}, {20 + i % 50}.5, 1)")


def _secret_free(root: Path, *outputs: str) -> None:
    """The password is nowhere mlcd records or prints."""
    for path in [root / "mlcd.lock", *(root / ".mlcd").rglob("*")]:
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    for text in outputs:
        assert PASSWORD not in text


@pytest.mark.postgres
def test_a_postgresql_table_reruns_only_what_reads_it(
    make_project: Cli, mlcd: Cli, pg_url: str
) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        _fill(conn.execute)
    url = pg_url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth: accepted, unused
    env = {"SHOP_URL": url}
    root = _project(make_project, freshness=True)
    first = mlcd(root, "run", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert outcomes(json.loads(first.stdout)) == {"prepare": "ran", "report": "ran"}
    raw = pd.read_parquet(root / "data" / "raw" / "customers.parquet")
    assert len(raw) == 200 and list(raw.columns) == ["id", "tenure", "charges"]

    # Unchanged table: the freshness query says so, nothing is read again, nothing runs.
    again = mlcd(root, "run", "--json", env=env)
    assert set(outcomes(json.loads(again.stdout)).values()) == {"skipped"}

    # One row changes: prepare runs again, report does not.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("update customers set charges = -1, updated = 2 where id = 7")
    changed = mlcd(root, "run", "--json", env=env)
    assert changed.returncode == 0, changed.stderr
    assert outcomes(json.loads(changed.stdout)) == {"prepare": "ran", "report": "skipped"}
    assert len(pd.read_parquet(root / "data" / "clean.parquet")) == 199

    # Back as it was: the earlier result comes from the run cache, the command does not run.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("update customers set charges = 27.5, updated = 3 where id = 7")
    back = mlcd(root, "run", "--json", env=env)
    assert outcomes(json.loads(back.stdout))["prepare"] == "cached"
    assert sorted(calls(root)) == ["prepare", "prepare", "report"]
    _secret_free(root, first.stdout, first.stderr, changed.stdout, back.stdout)
    events = mlcd(root, "events", "--json", env=env)
    assert PASSWORD not in events.stdout


def test_a_sqlite_table_without_a_freshness_query_is_read_and_compared(
    make_project: Cli, mlcd: Cli, tmp_path: Path
) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        _fill(conn.execute)
    env = {"SHOP_URL": f"sqlite:///{db}"}
    root = _project(make_project, freshness=False)
    assert outcomes(run_json_env(mlcd, root, env)) == {"prepare": "ran", "report": "ran"}
    # Read again (no cheap check), same bytes: nothing runs.
    assert set(outcomes(run_json_env(mlcd, root, env)).values()) == {"skipped"}
    with sqlite3.connect(db) as conn:
        conn.execute("insert into customers values (999, 3, 99.5, 2)")
    assert outcomes(run_json_env(mlcd, root, env)) == {"prepare": "ran", "report": "skipped"}
    assert len(pd.read_parquet(root / "data" / "clean.parquet")) == 201


def test_bad_sources_say_what_is_wrong_and_change_nothing(
    make_project: Cli, mlcd: Cli, tmp_path: Path
) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        _fill(conn.execute)
    root = _project(make_project, freshness=False)
    unset = mlcd(root, "run")
    assert unset.returncode != 0 and "${SHOP_URL}, which is not set" in unset.stderr
    nowhere = mlcd(root, "run", env={"SHOP_URL": "sqlite:///missing.db"})
    assert nowhere.returncode != 0
    assert "the SQLite database" in nowhere.stderr and "missing.db does not exist" in nowhere.stderr
    assert not (root / "missing.db").exists()  # never created by looking
    env = {"SHOP_URL": f"sqlite:///{db}"}
    assert run_json_env(mlcd, root, env)
    lock = (root / "mlcd.lock").read_text()
    with sqlite3.connect(db) as conn:
        conn.execute("drop table customers")
    broken = mlcd(root, "run", env=env)
    assert broken.returncode != 0
    assert "source data/raw/customers.parquet: the query failed" in broken.stderr
    assert "no such table: customers" in broken.stderr
    assert (root / "mlcd.lock").read_text() == lock
    assert len(pd.read_parquet(root / "data" / "raw" / "customers.parquet")) == 200
    bad = make_project(
        CONFIG.replace("FRESHNESS", "").replace(
            "        sql:\n", "        url: nowhere\n        sql:\n"
        ),
        name="bad",
    )
    refused = mlcd(bad, "status")
    assert refused.returncode == 2 and "mlcd.yaml:" in refused.stderr
    assert "stages.prepare.sources[0]" in refused.stderr


def run_json_env(mlcd: Cli, root: Path, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    result = mlcd(root, "run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


_ = run_json  # the plain helper, for symmetry with the pipeline tests


@pytest.mark.postgres
def test_postgresql_values_arrive_exactly_through_either_path(pg_url: str, tmp_path: Path) -> None:
    """COPY into pyarrow for the types its text renders exactly (NULL vs '' kept apart,
    booleans, dates, timestamps), the driver's cursor for the rest (numeric, json)."""
    import datetime as dt
    import decimal

    import psycopg

    from mlcd.sources import materialize
    from mlcd.store import Store

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "create table t (id int8, name text, ok bool, day date, at timestamp, x float8)"
        )
        conn.execute(
            "insert into t values (1, '', true, '2026-12-01', '2026-12-01 10:00:00.5', 1.5),"
            " (2, null, false, null, null, null), (3, 'a,\"b\"', null, '2026-01-02',"
            " '2026-01-02 00:00:00', -2.25)"
        )
        conn.execute("create table n (id int4, amount numeric(10, 2), doc jsonb)")
        conn.execute("insert into n values (1, 12.34, '{\"a\": 1}'), (2, null, null)")
    store = Store(f"sqlite:///{tmp_path / 'mlcd.db'}")
    try:
        item = {"kind": "sql", "url": pg_url, "freshness": None, "options": {}}
        fast = materialize(
            store, tmp_path, {**item, "path": "t.parquet", "query": "select * from t order by id"}
        )
        assert fast.rows == 3
        frame = pd.read_parquet(tmp_path / "t.parquet")
        assert frame["name"].tolist()[0] == "" and frame["name"].isna().tolist()[1]
        assert frame["name"].tolist()[2] == 'a,"b"'
        assert frame["ok"].tolist()[:2] == [True, False] and pd.isna(frame["ok"].tolist()[2])
        assert frame["day"].tolist()[0] == dt.date(2026, 12, 1)
        assert frame["at"].tolist()[0] == pd.Timestamp("2026-12-01 10:00:00.5")
        assert frame["x"].tolist()[2] == -2.25 and pd.isna(frame["x"].tolist()[1])
        slow = materialize(
            store, tmp_path, {**item, "path": "n.parquet", "query": "select * from n order by id"}
        )
        assert slow.rows == 2
        other = pd.read_parquet(tmp_path / "n.parquet")
        assert other["amount"].tolist()[0] == decimal.Decimal("12.34")
        empty = materialize(
            store, tmp_path, {**item, "path": "e.parquet", "query": "select * from t where id < 0"}
        )
        assert empty.rows == 0
        assert list(pd.read_parquet(tmp_path / "e.parquet").columns) == [
            "id",
            "name",
            "ok",
            "day",
            "at",
            "x",
        ]
    finally:
        store.dispose()
