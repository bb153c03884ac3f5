"""Data contracts: mlcd's ``validate_file`` against pandera and Great Expectations, 40 checks.

Data: a seeded Parquet file (zstd) of 1,000,000 rows x 20 columns: 5 integer, 7 float, 4 text
(two of them dictionary-encoded, read by pandas as ``category``), 1 boolean, 1 timestamp;
nulls in 2 float and 2 text columns. One list of 40 checks is turned into an mlcd contract,
a pandera ``DataFrameSchema`` and a Great Expectations suite, one to one:

* 20 types, 4 non-null columns, 8 bounds (min and max of 4 columns, each its own check),
  3 allowed-category lists, 1 unique key column, 3 row-level comparisons of two columns
  (``sale_price <= price`` ...), 1 row count.

Timed, each repetition from the Parquet file on disk to a finished report (so the read is
in all three):

* mlcd: ``validate_file(path, contract)`` (pyarrow, record batches of the named columns);
* pandera: ``pd.read_parquet(path)`` + ``schema.validate(frame, lazy=True)`` (every failure
  collected, as the other two do; pandas backend);
* Great Expectations: ``pd.read_parquet(path)`` + ``batch.validate(suite)`` through an
  ephemeral context's pandas data source (the 1.x API), ``result_format="BASIC"``. Building
  the context and the suite is set-up, reported apart and not timed.

``--reps`` rounds; in each, every tool runs in its own fresh process (one warm-up validation,
then ``--inner`` timed ones, default 1), the tools' order rotating between rounds; the table
shows medians over all timed runs, wall and CPU (``time.process_time``, all threads). Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that
process after the timed runs (so it includes imports; the RSS after imports and set-up, before
any data is read, is shown beside it). For mlcd the peak of pyarrow's memory pool is
compared with the table's in-memory Arrow size (``pq.read_table(path).nbytes``).

Agreement: a second file breaks five rules with known counts (123 prices above the maximum,
45 countries outside the list, 67 rows with ``sale_price > price``, 30 nulls in ``plan``, 10
repeated ids); the failing checks of each tool and their counts are printed. Great
Expectations counts every row of a repeated value (20), mlcd the repeats (10); pandera is
told ``report_duplicates="exclude_first"`` (10).

``--breakdown`` also times the parts of mlcd's ``validate_file`` (its schema read, the scan,
the second read for uniqueness) in one process.

    .venv/bin/python benchmarks/bench_validate.py [--rows 1000000] [--reps 5]
        [--tools mlcd,pandera,gx] [--breakdown] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

TOOLS = ("mlcd", "pandera", "gx")
NAMES = {"mlcd": "mlcd", "pandera": "pandera", "gx": "Great Expectations"}

# column: (mlcd type, pandas dtype as pandera names it, Great Expectations ``type_``)
COLUMNS: dict[str, tuple[str, str, str]] = {
    "id": ("integer", "int64", "int64"),
    "age": ("integer", "int64", "int64"),
    "tenure": ("integer", "int32", "int32"),
    "n_items": ("integer", "int64", "int64"),
    "year": ("integer", "int64", "int64"),
    "price": ("number", "float64", "float64"),
    "cost": ("number", "float64", "float64"),
    "sale_price": ("number", "float64", "float64"),
    "discount": ("number", "float64", "float64"),
    "rating": ("number", "float64", "float64"),
    "lat": ("number", "float64", "float64"),
    "lon": ("number", "float64", "float64"),
    "country": ("string", "str", "str"),
    "plan": ("string", "category", "CategoricalDtypeType"),
    "channel": ("string", "category", "CategoricalDtypeType"),
    "status": ("string", "str", "str"),
    "name": ("string", "str", "str"),
    "email": ("string", "str", "str"),
    "active": ("boolean", "bool", "bool"),
    "signup": ("datetime", "datetime64[us]", "datetime64"),
}
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "JP"]
PLANS = ["free", "pro", "team"]
CHANNELS = ["web", "ios", "android", "partner", "sales"]
STATUSES = ["active", "paused", "churned", "trial"]
NOT_NULL = ["id", "price", "country", "plan"]
BOUNDS = {"age": (18, 90), "tenure": (0, 72), "price": (0, 1000), "discount": (0, 1)}
ALLOWED = {"country": COUNTRIES, "plan": PLANS, "channel": CHANNELS}
UNIQUE = "id"
EXPRS = {  # name: (left, operator, right)
    "cost_le_price": ("cost", "<=", "price"),
    "sale_le_price": ("sale_price", "<=", "price"),
    "sale_ge_cost": ("sale_price", ">=", "cost"),
}
#: The broken file: check id -> rows that fail it (Great Expectations counts 2x for unique).
BROKEN = {"max:price": 123, "allowed:country": 45, "expr:sale_le_price": 67}
BROKEN |= {"nullable:plan": 30, "unique:id": 10}


def checks(rows: int) -> list[dict[str, Any]]:
    """The 40 checks, each ``{id, kind, column, ...}``; every tool's spec is built from these."""
    out: list[dict[str, Any]] = []
    for column, (kind, _pd, _gx) in COLUMNS.items():
        out.append({"id": f"type:{column}", "kind": "type", "column": column, "type": kind})
    for column in NOT_NULL:
        out.append({"id": f"nullable:{column}", "kind": "nullable", "column": column})
    for column, (low, high) in BOUNDS.items():
        out.append({"id": f"min:{column}", "kind": "min", "column": column, "value": low})
        out.append({"id": f"max:{column}", "kind": "max", "column": column, "value": high})
    for column, values in ALLOWED.items():
        out.append(
            {"id": f"allowed:{column}", "kind": "allowed", "column": column, "values": values}
        )
    out.append({"id": f"unique:{UNIQUE}", "kind": "unique", "column": UNIQUE})
    for name, (left, op, right) in EXPRS.items():
        out.append({"id": f"expr:{name}", "kind": "expr", "name": name, "terms": (left, op, right)})
    out.append({"id": "rows", "kind": "rows", "min": min(1000, rows), "max": rows * 10})
    assert len(out) == 40, len(out)
    return out


# ---------------------------------------------------------------- data
def make_table(rows: int, broken: bool) -> Any:
    """The seeded table (``broken``: the rules of ``BROKEN`` violated, nothing else)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(14)
    ids = np.arange(1, rows + 1, dtype=np.int64) * 7 + 1000
    price = np.round(rng.gamma(2.0, 80.0, rows).clip(0.5, 999.0), 2)
    cost = np.round(price * rng.uniform(0.2, 0.6, rows), 2)
    sale = np.round(price * rng.uniform(0.7, 1.0, rows), 2)
    sale = np.maximum(sale, cost)
    discount = rng.uniform(0, 1, rows)
    rating = rng.integers(1, 6, rows).astype(np.float64)
    country = rng.choice(np.array(COUNTRIES, dtype=object), rows)
    plan = rng.choice(np.array(PLANS, dtype=object), rows)
    channel = rng.choice(np.array(CHANNELS, dtype=object), rows)
    null_discount = rng.random(rows) < 0.05
    null_rating = rng.random(rows) < 0.10
    null_channel = rng.random(rows) < 0.03
    null_name = rng.random(rows) < 0.02
    null_plan = np.zeros(rows, dtype=bool)
    if broken:
        picks = rng.choice(rows, sum(BROKEN.values()), replace=False)
        spans, start = {}, 0
        for key, count in BROKEN.items():
            spans[key] = picks[start : start + count]
            start += count
        price[spans["max:price"]] = 1000.0 + rng.uniform(1, 100, 123).round(2)
        country[spans["allowed:country"]] = "Atlantis"
        chosen = spans["expr:sale_le_price"]
        sale[chosen] = np.round(price[chosen] * 1.1 + 0.01, 2)
        null_plan[spans["nullable:plan"]] = True
        dupes = spans["unique:id"]
        others = np.setdiff1d(np.arange(rows), dupes)[: len(dupes)]
        ids[dupes] = ids[others]
    number = np.arange(rows)
    user = pc.binary_join_element_wise("user", pa.array(number.astype(str)), "")
    email = pc.binary_join_element_wise(user, "example.com", "@")
    return pa.table(
        {
            "id": ids,
            "age": rng.integers(18, 91, rows),
            "tenure": rng.integers(0, 73, rows).astype(np.int32),
            "n_items": rng.poisson(12, rows).astype(np.int64),
            "year": rng.integers(2000, 2026, rows),
            "price": price,
            "cost": cost,
            "sale_price": sale,
            "discount": pa.array(discount, mask=null_discount),
            "rating": pa.array(rating, mask=null_rating),
            "lat": rng.uniform(-90, 90, rows),
            "lon": rng.uniform(-180, 180, rows),
            "country": pa.array(country, pa.string()),
            "plan": pa.array(plan, pa.string(), mask=null_plan).dictionary_encode(),
            "channel": pa.array(channel, pa.string(), mask=null_channel).dictionary_encode(),
            "status": pa.array(rng.choice(np.array(STATUSES, dtype=object), rows), pa.string()),
            "name": pa.array(
                pc.utf8_upper(user).to_numpy(zero_copy_only=False), pa.string(), mask=null_name
            ),
            "email": email,
            "active": rng.random(rows) < 0.7,
            "signup": pa.array(
                np.datetime64("2015-01-01", "s") + rng.integers(0, 10 * 365 * 86400, rows),
                pa.timestamp("us"),
            ),
        }
    )


# ---------------------------------------------------------------- the three tools
def mlcd_runner(spec: list[dict[str, Any]]) -> Any:
    from mlcd.contracts.spec import Contract
    from mlcd.contracts.validate import validate_file

    columns: dict[str, dict[str, Any]] = {c: {} for c in COLUMNS}
    contract: dict[str, Any] = {"path": "data.parquet", "columns": columns, "checks": []}
    for check in spec:
        kind = check["kind"]
        if kind == "type":
            columns[check["column"]]["type"] = check["type"]
        elif kind == "nullable":
            columns[check["column"]]["nullable"] = False
        elif kind in ("min", "max"):
            columns[check["column"]][kind] = check["value"]
        elif kind == "allowed":
            columns[check["column"]]["allowed"] = check["values"]
        elif kind == "unique":
            columns[check["column"]]["unique"] = True
        elif kind == "expr":
            contract["checks"].append({"name": check["name"], "expr": " ".join(check["terms"])})
        elif kind == "rows":
            contract["rows"] = {"min": check["min"], "max": check["max"]}
    model = Contract.model_validate(contract)

    def run(path: str) -> tuple[int, dict[str, int | None]]:
        result = validate_file(path, model, "bench")
        failing = {
            "rows" if r.check == "rows" else f"{r.check}:{r.column}": r.failing_rows or None
            for r in result.results
            if not r.passed
        }
        return len(result.results), failing

    return run


def pandera_runner(spec: list[dict[str, Any]]) -> Any:
    import operator

    import pandas as pd
    import pandera.pandas as pa

    column_checks: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    nullable = dict.fromkeys(COLUMNS, True)
    unique = dict.fromkeys(COLUMNS, False)
    frame_checks = []
    ops = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
    for check in spec:
        kind, column = check["kind"], check.get("column")
        if kind == "nullable":
            nullable[column] = False
        elif kind == "min":
            column_checks[column].append(pa.Check.ge(check["value"]))
        elif kind == "max":
            column_checks[column].append(pa.Check.le(check["value"]))
        elif kind == "allowed":
            column_checks[column].append(pa.Check.isin(check["values"]))
        elif kind == "unique":
            unique[column] = True
        elif kind == "expr":
            left, op, right = check["terms"]

            def holds(df: Any, left: str = left, op: str = op, right: str = right) -> Any:
                return ops[op](df[left], df[right])

            # ignore_na=False: a row with a null anywhere must not pass by default.
            frame_checks.append(pa.Check(holds, name=f"expr:{check['name']}", ignore_na=False))
        elif kind == "rows":
            low, high = check["min"], check["max"]
            frame_checks.append(
                pa.Check(lambda df, low=low, high=high: low <= len(df) <= high, name="rows")
            )
    schema = pa.DataFrameSchema(
        {
            column: pa.Column(
                COLUMNS[column][1],
                checks=column_checks[column],
                nullable=nullable[column],
                unique=unique[column],
                report_duplicates="exclude_first",
            )
            for column in COLUMNS
        },
        checks=frame_checks,
    )
    prefixes = {
        "greater_than_or_equal_to": "min",
        "less_than_or_equal_to": "max",
        "isin": "allowed",
        "field_uniqueness": "unique",
        "not_nullable": "nullable",
        "dtype(": "type",
        "column_in_dataframe": "column",
    }

    def run(path: str) -> tuple[int, dict[str, int | None]]:
        frame = pd.read_parquet(path)
        failing: dict[str, int | None] = {}
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            for (column, check), group in cases.groupby(["column", "check"], dropna=False):
                check = str(check)
                if check.startswith(("expr:", "rows")):
                    key = check
                else:
                    kind = next((v for k, v in prefixes.items() if check.startswith(k)), check)
                    key = f"{kind}:{column}"
                failing[key] = None if key.startswith(("type:", "rows")) else len(group)
        return len(spec), failing

    return run


def gx_runner(spec: list[dict[str, Any]]) -> Any:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("bench").add_dataframe_asset("frame")
    definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name="contract")
    for check in spec:
        kind, column, meta = check["kind"], check.get("column"), {"check": check["id"]}
        if kind == "type":
            expectation: Any = gxe.ExpectColumnValuesToBeOfType(
                column=column, type_=COLUMNS[column][2], meta=meta
            )
        elif kind == "nullable":
            expectation = gxe.ExpectColumnValuesToNotBeNull(column=column, meta=meta)
        elif kind == "min":
            expectation = gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=check["value"], meta=meta
            )
        elif kind == "max":
            expectation = gxe.ExpectColumnValuesToBeBetween(
                column=column, max_value=check["value"], meta=meta
            )
        elif kind == "allowed":
            expectation = gxe.ExpectColumnValuesToBeInSet(
                column=column, value_set=check["values"], meta=meta
            )
        elif kind == "unique":
            expectation = gxe.ExpectColumnValuesToBeUnique(column=column, meta=meta)
        elif kind == "expr":
            left, op, right = check["terms"]
            a, b = (left, right) if op.startswith(">") else (right, left)
            expectation = gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=op.endswith("="), meta=meta
            )
        else:
            expectation = gxe.ExpectTableRowCountToBeBetween(
                min_value=check["min"], max_value=check["max"], meta=meta
            )
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)

    def run(path: str) -> tuple[int, dict[str, int | None]]:
        frame = pd.read_parquet(path)
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format="BASIC")
        failing: dict[str, int | None] = {}
        for r in result.results:
            key = r.expectation_config.meta["check"]
            if r.exception_info.get("raised_exception"):
                raise RuntimeError(f"{key}: {r.exception_info.get('exception_message')}")
            if not r.success:
                failing[key] = r.result.get("unexpected_count")
        return len(result.results), failing

    return run


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker(tool: str, folder: Path, rows: int, reps: int, warmup: int, broken: bool) -> None:
    """One tool in this (fresh) process: set-up, warm-up, timed runs, then the broken file."""
    import warnings

    warnings.filterwarnings("ignore")
    # The same libraries loaded before the baseline for every tool: the peak over it is the
    # tool's own work (and its lazy imports), not pandas' or pyarrow's import.
    import pandas  # noqa: F401
    import pyarrow.compute
    import pyarrow.dataset
    import pyarrow.parquet

    good = str(folder / "good.parquet")
    start = time.perf_counter()
    spec = checks(rows)
    run = {"mlcd": mlcd_runner, "pandera": pandera_runner, "gx": gx_runner}[tool](spec)
    setup = time.perf_counter() - start
    baseline = _rss_mb()
    for _ in range(warmup):
        run(good)
    times: list[float] = []
    cpu: list[float] = []
    count, failing = 0, {}
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        count, failing = run(good)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pool = None
    if tool == "mlcd":
        import pyarrow as pa

        pool = pa.default_memory_pool().max_memory() / 2**20
    broken_failing = run(str(folder / "broken.parquet"))[1] if broken else None
    version = {"mlcd": "mlcd", "pandera": "pandera", "gx": "great_expectations"}[tool]
    from importlib.metadata import version as dist_version

    print(
        json.dumps(
            {
                "tool": tool,
                "version": dist_version(version),
                "setup_s": setup,
                "times": times,
                "cpu": cpu,
                "rss_baseline_mb": baseline,
                "rss_peak_mb": peak,
                "arrow_pool_peak_mb": pool,
                "checks": count,
                "failing_good": sorted(failing),
                "failing_broken": broken_failing,
            }
        )
    )


def breakdown(path: Path, rows: int, reps: int) -> dict[str, float]:
    """Where mlcd's time goes (medians of ``reps``, this process): the whole
    ``validate_file``; its ``_schema`` (it reads the first record batch of every column); a
    schema from the Parquet footer alone; the batch scan of the named columns with no check;
    the second read for uniqueness (``_duplicates``); ``validate_file`` with the footer's
    schema put in place of ``_schema`` (what that change would save)."""
    import pyarrow.dataset as ds

    import mlcd.contracts.validate as v

    run = mlcd_runner(checks(rows))
    original = v._schema

    def footer(target: Path) -> Any:
        return ds.dataset(target, format="parquet").schema

    def scan() -> None:
        for _batch in v._batches(path, list(COLUMNS)):
            pass

    steps: dict[str, Any] = {
        "validate_file": lambda: run(str(path)),
        "_schema (first batch, all columns)": lambda: original(path),
        "schema from the footer": lambda: footer(path),
        "scan of the 20 columns, no checks": scan,
        "_duplicates (id, second read)": lambda: v._duplicates(path, [UNIQUE]),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    times["validate_file, footer schema"] = []
    run(str(path))
    for _ in range(reps):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
        v._schema = footer  # type: ignore[assignment]
        try:
            start = time.perf_counter()
            run(str(path))
            times["validate_file, footer schema"].append(time.perf_counter() - start)
        finally:
            v._schema = original
    return {name: median(values) for name, values in times.items()}


# ---------------------------------------------------------------- driver
def run_tool(tool: str, folder: Path, args: Any, broken: bool) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--worker", tool, "--folder", str(folder)]
    argv += ["--rows", str(args.rows), "--reps", str(args.inner), "--warmup", str(args.warmup)]
    done = subprocess.run(argv + (["--broken"] if broken else []), capture_output=True, text=True)
    if done.returncode != 0:
        return {"tool": tool, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One tool's rounds (fresh processes) as one result: every timed run, median memory."""
    failed = [r for r in rounds if "error" in r]
    if failed:
        return failed[0]
    out = dict(rounds[0])
    out["times"] = [t for r in rounds for t in r["times"]]
    out["cpu"] = [t for r in rounds for t in r["cpu"]]
    for key in ("setup_s", "rss_baseline_mb", "rss_peak_mb"):
        out[key] = median([r[key] for r in rounds])
    if out["arrow_pool_peak_mb"] is not None:
        out["arrow_pool_peak_mb"] = max(r["arrow_pool_peak_mb"] for r in rounds)
    out["failing_good"] = sorted({k for r in rounds for k in r["failing_good"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--reps", type=int, default=5, help="rounds; each a fresh process per tool, alternating"
    )
    parser.add_argument("--inner", type=int, default=1, help="timed runs per process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per process first")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 repetitions")
    parser.add_argument("--json", action="store_true", help="one JSON line, no table")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the parts of mlcd's validate_file"
    )
    parser.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--broken", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.reps = 100_000, 2
    if args.worker:
        worker(args.worker, Path(args.folder), args.rows, args.reps, args.warmup, args.broken)
        return

    import pyarrow.parquet as pq

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="mlcd-bench-validate-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        good = make_table(args.rows, broken=False)
        pq.write_table(good, folder / "good.parquet", compression="zstd")
        del good
        broken = make_table(args.rows, broken=True)
        pq.write_table(broken, folder / "broken.parquet", compression="zstd")
        del broken
        arrow_mb = pq.read_table(folder / "good.parquet").nbytes / 2**20
        file_mb = os.path.getsize(folder / "good.parquet") / 2**20
        if not args.json:
            print(
                f"data: {args.rows:,} rows x {len(COLUMNS)} columns, Parquet {file_mb:.1f} MiB, "
                f"Arrow in memory {arrow_mb:.1f} MiB (written in {time.perf_counter() - start:.1f} s)",
                file=sys.stderr,
            )
        rounds: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
        for number in range(args.reps):
            order = tools[number % len(tools) :] + tools[: number % len(tools)]
            for tool in order:
                if not args.json:
                    print(f"round {number + 1}/{args.reps}: {NAMES[tool]} ...", file=sys.stderr)
                rounds[tool].append(run_tool(tool, folder, args, broken=number == 0))
        results = {tool: merge(done) for tool, done in rounds.items()}
        parts = breakdown(folder / "good.parquet", args.rows, args.reps) if args.breakdown else None
    summary = summarise(results, args, arrow_mb, file_mb)
    if parts is not None:
        summary["mlcd_breakdown_s"] = {k: round(v, 3) for k, v in parts.items()}
    if args.json:
        report("validate", **summary)
    else:
        print_table(summary)


def summarise(
    results: dict[str, dict[str, Any]], args: Any, arrow_mb: float, file_mb: float
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rows": args.rows,
        "columns": len(COLUMNS),
        "checks": 40,
        "reps": args.reps,
        "parquet_mib": round(file_mb, 1),
        "arrow_mib": round(arrow_mb, 1),
        "expected_broken": BROKEN,
        "tools": {},
    }
    for tool, r in results.items():
        if "error" in r:
            out["tools"][tool] = {"error": r["error"]}
            continue
        out["tools"][tool] = {
            "version": r["version"],
            "median_s": round(median(r["times"]), 3),
            "times_s": [round(t, 3) for t in r["times"]],
            "cpu_median_s": round(median(r["cpu"]), 3),
            "setup_s": round(r["setup_s"], 3),
            "rss_baseline_mib": round(r["rss_baseline_mb"]),
            "rss_peak_mib": round(r["rss_peak_mb"]),
            "arrow_pool_peak_mib": None
            if r["arrow_pool_peak_mb"] is None
            else round(r["arrow_pool_peak_mb"], 1),
            "checks": r["checks"],
            "failing_good": r["failing_good"],
            "failing_broken": r["failing_broken"],
        }
    return out


def print_table(summary: dict[str, Any]) -> None:
    tools = summary["tools"]
    print(
        f"\n{summary['rows']:,} rows x {summary['columns']} columns, {summary['checks']} checks; "
        f"Parquet {summary['parquet_mib']} MiB, Arrow in memory {summary['arrow_mib']} MiB; "
        f"medians of {summary['reps']}\n"
    )
    ours = tools.get("mlcd", {})
    print(
        "| tool | read + validate, wall (s) | CPU (s) | / mlcd (wall) | set-up (s) "
        "| RSS after set-up (MiB) | peak RSS (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for tool, r in tools.items():
        if "error" in r:
            print(f"| {NAMES[tool]} | failed: {r['error']} | | | | | |")
            continue
        ratio = f"{r['median_s'] / ours['median_s']:.2f}x" if "median_s" in ours else "–"
        print(
            f"| {NAMES[tool]} {r['version']} | {r['median_s']:.3f} | {r['cpu_median_s']:.3f} "
            f"| {ratio} | {r['setup_s']:.2f} | {r['rss_baseline_mib']} | {r['rss_peak_mib']} |"
        )
    if "median_s" in ours:
        print(
            f"\nmlcd: pyarrow pool peak {ours['arrow_pool_peak_mib']} MiB, peak RSS - RSS after "
            f"set-up {ours['rss_peak_mib'] - ours['rss_baseline_mib']} MiB, against "
            f"{summary['arrow_mib']} MiB for the whole table in Arrow"
        )
    if "mlcd_breakdown_s" in summary:
        print("\nwhere mlcd's time goes (medians, one process):")
        for name, seconds in summary["mlcd_breakdown_s"].items():
            print(f"  {name}: {seconds:.3f} s")
    print("\nfailing checks on the clean file:")
    for tool, r in tools.items():
        if "error" not in r:
            print(f"  {NAMES[tool]}: {r['failing_good'] or 'none'} ({r['checks']} checks run)")
    print(f"\nbroken file, expected {summary['expected_broken']} (Great Expectations: unique x2)")
    keys = sorted({k for r in tools.values() for k in r.get("failing_broken") or {}})
    print("| check | " + " | ".join(NAMES[t] for t in tools) + " |")
    print("|---|" + "---:|" * len(tools))
    for key in keys:
        cells = [
            "–" if key not in r.get("failing_broken", {}) else str(r["failing_broken"][key])
            for r in tools.values()
        ]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
