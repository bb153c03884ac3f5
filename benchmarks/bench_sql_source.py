"""SQL sources: a PostgreSQL table to Parquet through mlcd's ``materialize``, against COPY.

Data: a table of 5,000,000 rows in a scratch database (``mlcd_bench_<random>``, created on the
server at ``--admin`` and dropped at the end, even on error): ``id bigint``, ``qty integer``,
``price double precision``, ``score double precision`` (5 % null), ``name text``,
``category text`` (2 % null), filled server-side with ``generate_series`` and vacuumed. The
query is ``select id, qty, price, score, name, category from bench_rows`` for both sides.

Timed, each from nothing to a zstd Parquet file on disk (both in fresh processes,
alternating, ``--reps`` rounds; medians):

* mlcd: ``mlcd.sources.read.materialize(store, root, item)`` with ``kind: sql``: SQLAlchemy
  (psycopg 3) with a server-side cursor, 50,000-row partitions turned into Arrow with
  ``pa.array`` per column, streamed into a ``ParquetWriter`` (zstd); then mlcd's own work
  on top: the file's BLAKE3 digest, an fsync, the rename, one row in the SQLite store. The
  target is deleted before each run (a first read, not an unchanged one).
* COPY: psycopg 3 ``COPY (select ...) TO STDOUT (FORMAT csv)``, the streamed chunks collected
  in memory, ``pyarrow.csv.read_csv`` on them (column types given, as mlcd's schema),
  ``pq.write_table`` (zstd). No digest, no fsync, everything in memory at once.

Reported: rows/s for both and mlcd / COPY (aim: at least 70 %), CPU time and peak RSS
(``ru_maxrss`` of each fresh process). ``--profile`` adds a third side, mlcd's own
``materialize`` with Python's cyclic garbage collector disabled in its process (a what-if),
then, in this process, times mlcd's steps apart (SQLAlchemy fetch, transpose, ``pa.array``,
Parquet write, digest), the same loop with the collector off, and faster ways of getting the
same rows as Arrow (psycopg's own server-side cursor into columns, with and without the
collector; COPY csv streamed into ``pyarrow.csv.open_csv``).

    .venv/bin/python benchmarks/bench_sql_source.py [--rows 5000000] [--reps 3] [--profile]
        [--admin postgresql://postgres@127.0.0.1:5432/test] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
SIDES = {
    "mlcd": "mlcd `materialize` (sql)",
    "copy": "COPY csv + pyarrow",
    "mlcd_gc_off": "mlcd `materialize`, `gc.disable()` (--profile only)",
}
COLUMNS = ["id", "qty", "price", "score", "name", "category"]
QUERY = f"select {', '.join(COLUMNS)} from bench_rows"
CREATE = """
create table bench_rows (
    id bigint primary key, qty integer not null, price double precision not null,
    score double precision, name text not null, category text
)
"""
FILL = """
insert into bench_rows
select i, (i * 7919) % 1000,
       round(((i * 104729) % 1000003) / 100.0, 2)::double precision,
       case when i % 20 = 0 then null else ((i * 31) % 10007) / 10007.0 end,
       'customer-' || i::text || '-' || md5(i::text)::varchar(8),
       case when i % 50 = 0 then null else (array['retail','wholesale','online','partner',
            'internal'])[1 + i % 5] end
from generate_series(1::bigint, ROWS) as i
"""


def _arrow_schema() -> Any:
    import pyarrow as pa

    # What mlcd's pa.array infers from the Python values (PostgreSQL integer -> int -> int64).
    return pa.schema(
        [
            ("id", pa.int64()),
            ("qty", pa.int64()),
            ("price", pa.float64()),
            ("score", pa.float64()),
            ("name", pa.string()),
            ("category", pa.string()),
        ]
    )


# ---------------------------------------------------------------- the two sides (workers)
def run_mlcd(url: str, folder: Path) -> dict[str, Any]:
    from mlcd.sources.read import materialize
    from mlcd.store import Store

    store = Store(f"sqlite:///{folder}/mlcd.db")
    item = {
        "kind": "sql",
        "path": "data/rows.parquet",
        "url": url,
        "query": QUERY,
        "freshness": None,
        "options": {},
    }
    target = folder / item["path"]
    target.unlink(missing_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    fetched = materialize(store, folder, item)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    store.engine.dispose()
    return {"seconds": seconds, "cpu": cpu, "rows": fetched.rows, "bytes": target.stat().st_size}


def run_copy(url: str, folder: Path) -> dict[str, Any]:
    import io

    import psycopg
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    target = folder / "copy.parquet"
    target.unlink(missing_ok=True)
    schema = _arrow_schema()
    start, cpu = time.perf_counter(), time.process_time()
    buffer = io.BytesIO()
    copy_sql = f"COPY ({QUERY}) TO STDOUT (FORMAT csv)"
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for chunk in copy:
            buffer.write(chunk)
    table = csv.read_csv(
        pa.py_buffer(buffer.getbuffer()),
        read_options=csv.ReadOptions(column_names=COLUMNS),
        convert_options=csv.ConvertOptions(
            column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    del buffer
    pq.write_table(table, target, compression="zstd")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "rows": table.num_rows, "bytes": target.stat().st_size}


def worker(side: str, url: str) -> None:
    """One timed materialisation in this fresh process; one JSON line."""
    import pyarrow.parquet  # noqa: F401  (imports outside the clock, both sides)
    import sqlalchemy  # noqa: F401

    folder = Path(tempfile.mkdtemp(prefix=f"mlcd-bench-sql-{side}-"))
    try:
        if side == "mlcd_gc_off":  # mlcd's own code, Python's cyclic collector off (what-if)
            import gc

            gc.disable()
        out = (run_copy if side == "copy" else run_mlcd)(url, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


# ---------------------------------------------------------------- where mlcd's time goes
def profile(url: str) -> dict[str, float]:
    """mlcd's steps timed apart (as ``_query_batches`` and ``_write_parquet`` do them), and
    faster ways to get the same rows as Arrow; one run each, seconds."""
    import gc

    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import create_engine, text

    from mlcd.digest import hash_file
    from mlcd.sources.read import BATCH_ROWS

    out: dict[str, float] = {}
    engine = create_engine(url)
    folder = Path(tempfile.mkdtemp(prefix="mlcd-bench-sql-profile-"))
    try:
        # mlcd's loop: SQLAlchemy rows (server-side cursor, partitions of 50,000), the
        # transpose (zip) and pa.array per column, each step's time summed.
        batches, transpose, convert = [], 0.0, 0.0
        start = time.perf_counter()
        with engine.connect().execution_options(stream_results=True) as conn:
            result = conn.execute(text(QUERY))
            names = list(result.keys())
            for rows in result.partitions(BATCH_ROWS):
                t = time.perf_counter()
                columns = [list(values) for values in zip(*rows, strict=True)]
                transpose += time.perf_counter() - t
                t = time.perf_counter()
                arrays = [pa.array(values) for values in columns]
                batches.append(pa.RecordBatch.from_arrays(arrays, names=names))
                convert += time.perf_counter() - t
        total = time.perf_counter() - start
        out["mlcd_loop_total"] = total
        out["mlcd_loop_sqlalchemy_fetch"] = total - transpose - convert
        out["mlcd_loop_transpose_zip"] = transpose
        out["mlcd_loop_pa_array"] = convert
        # The same loop with Python's cyclic garbage collector off: every partition allocates
        # 50,000 Row objects and their values, which sets off full collections.
        gc.disable()
        try:
            start = time.perf_counter()
            with engine.connect().execution_options(stream_results=True) as conn:
                for rows in conn.execute(text(QUERY)).partitions(BATCH_ROWS):
                    [pa.array(list(values)) for values in zip(*rows, strict=True)]
            out["mlcd_loop_gc_disabled"] = time.perf_counter() - start
        finally:
            gc.enable()
        start = time.perf_counter()
        path = folder / "rows.parquet"
        with pq.ParquetWriter(path, batches[0].schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
        out["parquet_write_50k_row_groups"] = time.perf_counter() - start
        del batches
        start = time.perf_counter()
        hash_file(path)
        out["blake3_digest"] = time.perf_counter() - start
        # psycopg's own server-side cursor (tuples, no SQLAlchemy Row), fetch only.
        start = time.perf_counter()
        with psycopg.connect(url) as conn, conn.cursor(name="bench") as cur:
            cur.execute(QUERY)
            while cur.fetchmany(BATCH_ROWS):
                pass
        out["psycopg_fetchmany_only"] = time.perf_counter() - start
        # ... and into Arrow columns as mlcd does.
        start = time.perf_counter()
        with psycopg.connect(url) as conn, conn.cursor(name="bench") as cur:
            cur.execute(QUERY)
            while rows := cur.fetchmany(BATCH_ROWS):
                [pa.array(values) for values in zip(*rows, strict=True)]
        out["psycopg_fetchmany_to_arrow"] = time.perf_counter() - start
        gc.disable()
        try:
            start = time.perf_counter()
            with psycopg.connect(url) as conn, conn.cursor(name="bench") as cur:
                cur.execute(QUERY)
                while rows := cur.fetchmany(BATCH_ROWS):
                    [pa.array(values) for values in zip(*rows, strict=True)]
            out["psycopg_fetchmany_to_arrow_gc_disabled"] = time.perf_counter() - start
        finally:
            gc.enable()
        # COPY csv streamed into pyarrow's CSV reader batch by batch (bounded memory).
        out["copy_csv_streamed_to_arrow"] = _copy_streamed(url)
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _copy_streamed(url: str) -> float:
    """COPY csv piped into ``pyarrow.csv.open_csv`` (bounded memory), batches counted."""
    import threading

    import psycopg
    import pyarrow.csv as csv

    read_fd, write_fd = os.pipe()
    start = time.perf_counter()

    def produce() -> None:
        copy_sql = f"COPY ({QUERY}) TO STDOUT (FORMAT csv)"
        with (
            os.fdopen(write_fd, "wb") as sink,
            psycopg.connect(url) as conn,
            conn.cursor() as cur,
            cur.copy(copy_sql) as copy,
        ):
            for chunk in copy:
                sink.write(chunk)

    thread = threading.Thread(target=produce)
    thread.start()
    with os.fdopen(read_fd, "rb") as source:
        reader = csv.open_csv(
            source,
            read_options=csv.ReadOptions(column_names=COLUMNS, block_size=8 << 20),
            convert_options=csv.ConvertOptions(
                column_types=_arrow_schema(), strings_can_be_null=True
            ),
        )
        rows = sum(batch.num_rows for batch in reader)
    thread.join()
    assert rows > 0
    return time.perf_counter() - start


# ---------------------------------------------------------------- driver
def _create(admin: str) -> tuple[str, str]:
    """A new, empty scratch database: (name, URL)."""
    import psycopg

    name = f"mlcd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, admin.rsplit("/", 1)[0] + f"/{name}"


def _fill(url: str, rows: int, quiet: bool) -> None:
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE)
        conn.execute(FILL.replace("ROWS", str(int(rows))))
        conn.execute("VACUUM (FREEZE, ANALYZE) bench_rows")
        size = conn.execute("select pg_total_relation_size('bench_rows')").fetchone()
    if not quiet:
        print(
            f"table: {rows:,} rows ({size[0] / 2**20 if size else 0:.0f} MiB with its index), "
            f"filled in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )


def _drop(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _spawn(side: str, url: str) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--worker", side, "--url", url]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--reps", type=int, default=3, help="rounds, the two sides alternating")
    parser.add_argument("--admin", default=ADMIN, help="a database to create the scratch one")
    parser.add_argument("--profile", action="store_true", help="split mlcd's time by step")
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 2 rounds")
    parser.add_argument("--json", action="store_true", help="one JSON line, no table")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.url)
        return
    if args.quick:
        args.rows, args.reps = 200_000, 2

    try:
        name, url = _create(args.admin)
    except Exception as exc:  # no server (make bench on a machine without PostgreSQL)
        print(f"skipped: cannot create a scratch database through {args.admin}: {exc}")
        return
    try:
        _fill(url, args.rows, args.json)
        sides = list(SIDES)[: 3 if args.profile else 2]
        for side in sides[:2]:  # warm the server's buffers, the imports, the disk
            _spawn(side, url)
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for number in range(args.reps):
            for side in sides if number % 2 == 0 else sides[::-1]:
                runs[side].append(_spawn(side, url))
                if not args.json:
                    last = runs[side][-1]
                    print(f"round {number + 1}: {side} {last['seconds']:.2f} s", file=sys.stderr)
        steps = profile(url) if args.profile else None
    finally:
        _drop(args.admin, name)

    summary: dict[str, Any] = {"rows": args.rows, "reps": args.reps}
    for side, done in runs.items():
        assert all(r["rows"] == args.rows for r in done), (side, [r["rows"] for r in done])
        seconds = median([r["seconds"] for r in done])
        summary[side] = {
            "median_s": round(seconds, 3),
            "times_s": [round(r["seconds"], 3) for r in done],
            "rows_per_s": round(args.rows / seconds),
            "cpu_s": round(median([r["cpu"] for r in done]), 3),
            "peak_rss_mib": round(median([r["peak_mb"] for r in done])),
            "parquet_mib": round(done[0]["bytes"] / 2**20, 1),
        }
    summary["mlcd_over_copy"] = round(
        summary["mlcd"]["rows_per_s"] / summary["copy"]["rows_per_s"], 3
    )
    if steps is not None:
        summary["profile_s"] = {k: round(v, 3) for k, v in steps.items()}
    if args.json:
        report("sql_source", **summary)
        return
    print(f"\n{args.rows:,} rows x {len(COLUMNS)} columns, medians of {args.reps}\n")
    print("| path | wall (s) | rows/s | CPU (s) | peak RSS (MiB) | Parquet (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for side, r in summary.items():
        if side not in SIDES:
            continue
        label = SIDES[side]
        print(
            f"| {label} | {r['median_s']:.2f} | {r['rows_per_s']:,} | {r['cpu_s']:.2f} "
            f"| {r['peak_rss_mib']} | {r['parquet_mib']} |"
        )
    print(f"\nmlcd / COPY speed: {summary['mlcd_over_copy']:.0%} (aim: at least 70 %)")
    if "mlcd_gc_off" in summary:
        ratio = summary["mlcd_gc_off"]["rows_per_s"] / summary["copy"]["rows_per_s"]
        print(f"mlcd with the cyclic GC off / COPY speed: {ratio:.0%}")
    if steps is not None:
        print("\nwhere mlcd's time goes, and faster fetches (one run each, in this process):")
        for key, value in summary["profile_s"].items():
            print(f"  {key}: {value:.2f} s ({args.rows / value:,.0f} rows/s)")


if __name__ == "__main__":
    main()
