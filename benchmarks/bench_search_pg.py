"""Run search on PostgreSQL at 100,000 runs: mlcd's planned query against PostgreSQL's own
plan of the same filter, end to end and split into server and client time.

``bench_tracking.py``'s data (5 params, 5 metrics, a tag per run) is written into a scratch
database (or ``--reuse URL`` points at one written before), vacuumed and analysed as
autovacuum leaves a table in use. For each case:

* ``search``: ``tracking.query.search`` end to end (plan, page, params/metrics/tags), median
  wall time;
* ``server``: the sum over every statement the search sent of PostgreSQL's own planning +
  execution time (``EXPLAIN ANALYZE`` of the same statement with the same parameters): what
  the database spends, whatever else loads the machine's CPUs;
* ``client CPU``: this process's CPU time for the search (compiling SQL, reading rows,
  building records);
* ``plain``: PostgreSQL's own plan of the unplanned filter (``to_sql``), the query alone.

    .venv/bin/python benchmarks/bench_search_pg.py [--runs 100000] [--reps 15] [--reuse URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
CASES = (
    ("metric + param, newest 100", "metrics.roc_auc > 0.9 and params.model = 'gbm'", 100),
    ("metric + param, narrow, newest 100", "metrics.roc_auc > 0.99 and params.lr = 0.1", 100),
    (
        "metric + param + tag, newest 100",
        "metrics.roc_auc > 0.9 and params.model = 'gbm' and tags.branch = 'main'",
        100,
    ),
    ("unfiltered, newest 1,000", None, 1000),
    ("unfiltered, newest 100", None, 100),
)


def _server_ms(store: Any, statements: list[tuple[str, Any]]) -> float:
    total = 0.0
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            cursor = raw.cursor()
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            plan = cursor.fetchone()[0][0]
            total += plan["Planning Time"] + plan["Execution Time"]
    return total


def _plain_ms(store: Any, filter: str, limit: int, reps: int) -> float:
    """PostgreSQL's own plan of the filter, executed (the page query alone)."""
    from sqlalchemy import select, text

    from mlcd.store.tables import runs
    from mlcd.tracking.clause import order_clauses, to_sql
    from mlcd.tracking.filter import parse_filter
    from mlcd.tracking.query import ATTRIBUTE_COLUMNS

    stmt = (
        select(*(runs.c[n] for n in ATTRIBUTE_COLUMNS))
        .where(to_sql(parse_filter(filter)))
        .order_by(*order_clauses([]))
        .limit(limit)
    )
    times = []
    with store.read() as conn:
        sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
        for _ in range(reps):
            plan = conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)).scalar_one()[0]
            times.append(plan["Planning Time"] + plan["Execution Time"])
    return median(times)


def measure(store: Any, reps: int) -> list[dict[str, Any]]:
    from sqlalchemy import event

    from mlcd.tracking.query import count, search

    sent: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    rows = []
    for label, filter, limit in CASES:
        with store.read() as conn:  # warm the caches and the connection
            search(conn, filter, limit=limit)
        wall, cpu, server = [], [], []
        for _ in range(reps):
            start, start_cpu = time.perf_counter(), time.process_time()
            with store.read() as conn:
                found = search(conn, filter, limit=limit)
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        event.listen(store.engine, "before_cursor_execute", grab)
        for _ in range(min(reps, 5)):
            sent.clear()
            with store.read() as conn:
                search(conn, filter, limit=limit)
            server.append(_server_ms(store, list(sent)))
        event.remove(store.engine, "before_cursor_execute", grab)
        with store.read() as conn:
            matches = count(conn, filter)
        row = {
            "case": label,
            "filter": filter,
            "limit": limit,
            "returned": len(found),
            "matches": matches,
            "search_ms": median(wall),
            "search_min_ms": min(wall),
            "server_ms": median(server),
            "client_cpu_ms": median(cpu),
            "plain_query_ms": _plain_ms(store, filter, limit, 5) if filter else None,
        }
        report("search_pg", **row)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--server", default=ADMIN, help="an admin URL of the PostgreSQL server")
    parser.add_argument("--reuse", help="a database written before (kept; not dropped)")
    args = parser.parse_args()

    import psycopg

    from mlcd.store import Store

    name = None
    if args.reuse:
        url = args.reuse
        store = Store(url)  # migrates it to HEAD (adds this version's indexes)
    else:
        from bench_tracking import build_big_store

        name = f"mlcd_bench_search_{os.getpid()}"
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = args.server.rsplit("/", 1)[0] + "/" + name
        store = build_big_store(url, args.runs)
    try:
        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as conn:
            conn.execute("VACUUM ANALYZE")
        load = os.getloadavg()
        rows = measure(store, args.reps)
        print(f"\nload average at the start: {load[0]:.1f} (2 CPUs)")
        print(f"{'case':38} {'search':>8} {'server':>8} {'client':>8} {'PG plan':>8}  matches")
        for row in rows:
            plain = "" if row["plain_query_ms"] is None else f"{row['plain_query_ms']:8.1f}"
            print(
                f"{row['case']:38} {row['search_ms']:8.1f} {row['server_ms']:8.1f} "
                f"{row['client_cpu_ms']:8.1f} {plain:>8}  {row['matches']}"
            )
    finally:
        store.dispose()
        if name is not None:
            with psycopg.connect(args.server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
