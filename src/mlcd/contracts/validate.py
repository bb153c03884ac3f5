"""Checking a table against its contract with pyarrow compute, batch by batch.

A Parquet file (or folder of them) is read in record batches of the columns the contract
names, so a file larger than memory is checked in bounded memory; uniqueness needs one column
at a time. Every failing check reports the number of failing rows and a few of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.contracts.spec import COMPARISON, ColumnRule, Contract, Freshness
from mlcd.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

SAMPLE_ROWS = 5
BATCH_ROWS = 262_144


@dataclass
class CheckResult:
    """One rule of a contract, checked."""

    check: str  # type | nullable | null_share | min | max | allowed | unique | key | rows | expr | column
    column: str | None
    passed: bool
    failing_rows: int = 0
    message: str = ""
    level: str = "error"  # error | warn
    sample: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ContractReport:
    """A dataset checked against its contract."""

    name: str
    path: str
    rows: int
    results: list[CheckResult] = field(default_factory=list)

    @property
    def errors(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.level == "error"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.level == "warn"]

    @property
    def passed(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One line: what failed and how much."""
        if not self.errors and not self.warnings:
            return f"data '{self.name}' ({self.path}, {self.rows:,} rows): {len(self.results)} checks passed"
        parts = [f"{r.message}" for r in self.errors] + [
            f"warning: {r.message}" for r in self.warnings
        ]
        return f"data '{self.name}' ({self.path}): " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "rows": self.rows,
            "passed": self.passed,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "results": [r.to_dict() for r in self.results],
        }


# ---------------------------------------------------------------- reading
def _batches(path: Path, columns: list[str] | None) -> Iterator[pa.RecordBatch]:

    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        import pyarrow.dataset as ds

        dataset = ds.dataset(path, format="parquet")
        names = (
            dataset.schema.names
            if columns is None
            else [c for c in columns if c in dataset.schema.names]
        )
        # One batch and one file ahead: memory stays near one batch of the named columns.
        yield from dataset.to_batches(
            columns=names, batch_size=BATCH_ROWS, batch_readahead=1, fragment_readahead=1
        )
        return
    if suffix in (".csv", ".tsv"):
        import pyarrow.csv as csv

        options = csv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
        # An empty field is a missing value, as pandas and every spreadsheet read it.
        convert = csv.ConvertOptions(strings_can_be_null=True)
        reader = csv.open_csv(path, parse_options=options, convert_options=convert)
        for batch in reader:
            yield (
                batch
                if columns is None
                else batch.select([c for c in columns if c in batch.schema.names])
            )
        return
    if suffix in (".jsonl", ".ndjson", ".json"):
        import pyarrow.json as pj

        table = pj.read_json(path)
        for batch in table.to_batches(BATCH_ROWS):
            yield (
                batch
                if columns is None
                else batch.select([c for c in columns if c in batch.schema.names])
            )
        return
    raise UsageError(
        f"cannot check {path}: unknown format '{suffix}'", hint="use Parquet, CSV or JSON lines"
    )


def _schema(path: Path) -> pa.Schema:
    """The columns and types: from the Parquet footer (nothing decoded), else a first batch."""
    import pyarrow as pa

    if path.is_dir() or path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.dataset as ds

        return ds.dataset(path, format="parquet").schema
    for batch in _batches(path, None):
        return batch.schema
    return pa.schema([])


def _kind(dtype: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_dictionary(dtype)
    ):
        return "string"
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "datetime"
    if pa.types.is_null(dtype):
        return "null"
    return str(dtype)


def _type_ok(expected: str, actual: str) -> bool:
    if actual == "null":  # an all-null column: nullability decides
        return True
    return actual == expected or (expected == "number" and actual == "integer")


# ---------------------------------------------------------------- checking
class _Tally:
    """Failing-row count and a small sample, accumulated over batches."""

    def __init__(self) -> None:
        self.count = 0
        self.sample: list[dict[str, Any]] = []

    def add(self, batch: pa.RecordBatch, mask: Any, columns: list[str]) -> None:
        import pyarrow.compute as pc

        mask = pc.fill_null(mask, False)
        failing = int(pc.sum(mask).as_py() or 0)
        if not failing:
            return
        self.count += failing
        if len(self.sample) < SAMPLE_ROWS:
            rows = batch.filter(mask).select([c for c in columns if c in batch.schema.names])
            self.sample.extend(rows.slice(0, SAMPLE_ROWS - len(self.sample)).to_pylist())


def _operand(batch: pa.RecordBatch, term: str) -> Any:
    import pyarrow as pa

    if term in batch.schema.names:
        return batch.column(term)
    try:
        return pa.scalar(float(term))
    except ValueError:
        raise UsageError(
            f"check names column '{term}', which the data does not have",
            hint=f"columns: {', '.join(batch.schema.names)}",
        ) from None


_OPS = {
    ">=": "greater_equal",
    "<=": "less_equal",
    ">": "greater",
    "<": "less",
    "==": "equal",
    "!=": "not_equal",
}


def _expr_mask(batch: pa.RecordBatch, expr: str) -> Any:
    """True where a row fails ``expr`` (a null operand fails too)."""
    import re

    import pyarrow.compute as pc

    ok = None
    for part in re.split(r"\s+and\s+", expr):
        match = COMPARISON.match(part)
        assert match is not None  # checked when the contract was loaded
        left, op, right = match.groups()
        holds = getattr(pc, _OPS[op])(_operand(batch, left), _operand(batch, right))
        holds = pc.fill_null(holds, False)
        ok = holds if ok is None else pc.and_(ok, holds)
    return pc.invert(ok)


def _expr_columns(expr: str) -> list[str]:
    import re

    out = []
    for part in re.split(r"\s+and\s+", expr):
        match = COMPARISON.match(part)
        if match:
            out += [t for t in (match.group(1), match.group(3)) if not _is_number(t)]
    return out


def _is_number(term: str) -> bool:
    try:
        float(term)
    except ValueError:
        return False
    return True


def validate_file(
    path: str | os.PathLike[str],
    contract: Contract,
    name: str = "data",
    shown: str | None = None,
    base: str | os.PathLike[str] | None = None,
) -> ContractReport:
    """Check the file (or Parquet folder) at ``path`` against ``contract``; ``shown`` is the
    path reports name (default ``path``), ``base`` the folder a relative distribution
    reference is read from (default: the current folder).

    Raises:
        UsageError: the file does not exist or has an unknown format.
    """
    import pyarrow.compute as pc

    target = Path(path)
    if not target.exists():
        raise UsageError(
            f"data '{name}': {target} does not exist",
            hint="run the stage that writes it, or fix 'path' under data: in mlcd.yaml",
        )
    schema = _schema(target)
    present = set(schema.names)
    report = ContractReport(name, shown or str(path), 0)
    results = report.results

    def level(rule: ColumnRule | None = None, warn: bool = False) -> str:
        return "warn" if warn or (rule is not None and rule.warn) else "error"

    # Columns: present, of the right type.
    checked: dict[str, ColumnRule] = {}
    for column, rule in contract.columns.items():
        if column not in present:
            close = _close(column, present)
            results.append(
                CheckResult(
                    "column", column, False, 0,
                    f"column '{column}' is missing" + (f" (renamed to '{close}'?)" if close else ""),
                    level(rule),
                )
            )  # fmt: skip
            continue
        checked[column] = rule
        if rule.type is not None:
            actual = _kind(schema.field(column).type)
            ok = _type_ok(rule.type, actual)
            results.append(
                CheckResult(
                    "type", column, ok, 0,
                    f"column '{column}' is {actual}, the contract says {rule.type}",
                    level(rule),
                )
            )  # fmt: skip
    for column in contract.key:
        if column not in present:
            results.append(
                CheckResult("key", column, False, 0, f"key column '{column}' is missing")
            )
    if not contract.allow_extra_columns:
        extra = sorted(present - set(contract.columns) - set(contract.key))
        if extra:
            results.append(
                CheckResult(
                    "column", None, False, 0, f"columns not in the contract: {', '.join(extra)}"
                )
            )

    # Row-wise checks, batch by batch over the columns they need.
    needed = sorted(
        {*checked, *(k for k in contract.key if k in present)}
        | {c for check in contract.checks for c in _expr_columns(check.expr) if c in present}
    )
    tallies: dict[tuple[str, str | None], _Tally] = {}

    def tally(check: str, column: str | None) -> _Tally:
        return tallies.setdefault((check, column), _Tally())

    rows = 0
    nulls: dict[str, int] = {}
    for batch in _batches(target, needed) if needed else _count_only(target):
        rows += batch.num_rows
        for column, rule in checked.items():
            values = batch.column(column)
            nulls[column] = nulls.get(column, 0) + values.null_count
            for kind, mask in column_masks(values, rule):
                tally(kind, column).add(batch, mask, needed)
        for column in contract.key:
            if column in present:
                tally("key_null", column).add(batch, pc.is_null(batch.column(column)), needed)
        for check in contract.checks:
            if all(c in batch.schema.names for c in _expr_columns(check.expr)):
                tally("expr", check.name or check.expr).add(
                    batch, _expr_mask(batch, check.expr), needed
                )
    report.rows = rows

    for column, rule in checked.items():
        lvl = level(rule)
        if not rule.nullable:
            t = tally("nullable", column)
            results.append(
                CheckResult(
                    "nullable",
                    column,
                    t.count == 0,
                    t.count,
                    f"column '{column}': {t.count:,} null value(s) where none are allowed",
                    lvl,
                    t.sample,
                )
            )
        if rule.max_null_share is not None:
            share = nulls.get(column, 0) / rows if rows else 0.0
            results.append(
                CheckResult(
                    "null_share",
                    column,
                    share <= rule.max_null_share,
                    nulls.get(column, 0),
                    f"column '{column}': {share:.1%} null, at most {rule.max_null_share:.1%} allowed",
                    lvl,
                )
            )
        for bound in ("min", "max"):
            limit = getattr(rule, bound)
            if limit is None:
                continue
            t = tally(bound, column)
            word = "below the minimum" if bound == "min" else "above the maximum"
            results.append(
                CheckResult(
                    bound,
                    column,
                    t.count == 0,
                    t.count,
                    f"column '{column}': {t.count:,} row(s) {word} {limit:g}",
                    lvl,
                    t.sample,
                )
            )
        if rule.allowed is not None:
            t = tally("allowed", column)
            results.append(
                CheckResult(
                    "allowed",
                    column,
                    t.count == 0,
                    t.count,
                    f"column '{column}': {t.count:,} row(s) outside the allowed values",
                    lvl,
                    t.sample,
                )
            )
        if rule.unique:
            dupes = _duplicates(target, [column])
            results.append(
                CheckResult(
                    "unique",
                    column,
                    dupes == 0,
                    dupes,
                    f"column '{column}': {dupes:,} duplicated value(s)",
                    lvl,
                )
            )
    if contract.key and all(k in present for k in contract.key):
        label = ", ".join(contract.key)
        nulls_in_key = sum(tally("key_null", k).count for k in contract.key)
        samples = [s for k in contract.key for s in tally("key_null", k).sample][:SAMPLE_ROWS]
        results.append(
            CheckResult(
                "key",
                label,
                nulls_in_key == 0,
                nulls_in_key,
                f"key ({label}): {nulls_in_key:,} null value(s)",
                "error",
                samples,
            )
        )
        dupes = _duplicates(target, contract.key)
        results.append(
            CheckResult(
                "key", label, dupes == 0, dupes, f"key ({label}): {dupes:,} duplicated row(s)"
            )
        )
    for check in contract.checks:
        t = tally("expr", check.name or check.expr)
        missing = [c for c in _expr_columns(check.expr) if c not in present]
        if missing:
            results.append(
                CheckResult(
                    "expr",
                    check.name or check.expr,
                    False,
                    0,
                    f"check '{check.expr}' names missing column(s) {', '.join(missing)}",
                    level(warn=check.warn),
                )
            )
            continue
        results.append(
            CheckResult(
                "expr",
                check.name or check.expr,
                t.count == 0,
                t.count,
                f"check '{check.expr}': {t.count:,} failing row(s)",
                level(warn=check.warn),
                t.sample,
            )
        )
    if contract.freshness is not None:
        results.append(_fresh(target, contract.freshness, present))
    if contract.distribution is not None:
        results.extend(_distribution(target, contract, present, Path(base or ".")))
    if contract.rows is not None:
        low, high = contract.rows.min, contract.rows.max
        ok = (low is None or rows >= low) and (high is None or rows <= high)
        bounds = f"{'' if low is None else f'at least {low:,}'}{' and ' if low is not None and high is not None else ''}{'' if high is None else f'at most {high:,}'}"
        results.append(
            CheckResult("rows", None, ok, 0, f"{rows:,} rows, the contract says {bounds}")
        )
    return report


def column_masks(values: Any, rule: ColumnRule) -> Iterator[tuple[str, Any]]:
    """``(check, mask)`` for a column's row rules: True where a row breaks the rule."""
    import pyarrow.compute as pc

    if not rule.nullable:
        yield "nullable", pc.is_null(values)
    if _kind(values.type) in ("integer", "number"):
        if rule.min is not None:
            yield "min", pc.less(values, rule.min)
        if rule.max is not None:
            yield "max", pc.greater(values, rule.max)
    if rule.allowed is not None:
        yield "allowed", _outside(values, rule.allowed)


def count_violations(table: Any, columns: Mapping[str, Any]) -> dict[str, int]:
    """Rows breaking each row rule of ``columns`` (``{column: rule}``) in an Arrow table or a
    pandas frame: ``{"column:check": rows}``, warn rules included (monitoring counts both)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(table, pa.Table | pa.RecordBatch):
        table = pa.Table.from_pandas(table, preserve_index=False)
    counts: dict[str, int] = {}
    for column, raw in columns.items():
        if column not in table.column_names:
            continue
        rule = raw if isinstance(raw, ColumnRule) else ColumnRule.model_validate(raw)
        for check, mask in column_masks(table.column(column), rule):
            counts[f"{column}:{check}"] = int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)
    return counts


def _outside(values: Any, allowed: list[Any]) -> Any:
    """True where a non-null value is not one of ``allowed`` (compared as text for text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if _kind(values.type) == "string":
        values = values.cast(pa.string())
        choices = pa.array([str(v) for v in allowed], pa.string())
    else:
        try:
            choices = pa.array(allowed).cast(values.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            values = values.cast(pa.string())
            choices = pa.array([str(v) for v in allowed], pa.string())
    return pc.and_(pc.invert(pc.is_in(values, value_set=choices)), pc.is_valid(values))


def _fresh(path: Path, rule: Freshness, present: set[str]) -> CheckResult:
    """The newest value of the column against ``max_age`` before now."""
    import datetime as dt
    import time

    import pyarrow.compute as pc

    from mlcd.durations import parse_duration

    level = "warn" if rule.warn else "error"
    if rule.column not in present:
        return CheckResult(
            "freshness",
            rule.column,
            False,
            0,
            f"freshness column '{rule.column}' is missing",
            level,
        )
    newest = None
    for batch in _batches(path, [rule.column]):
        top = pc.max(batch.column(rule.column)).as_py()
        if top is not None and (newest is None or top > newest):
            newest = top
    if isinstance(newest, dt.datetime):
        at = (newest if newest.tzinfo else newest.replace(tzinfo=dt.UTC)).timestamp()
    elif isinstance(newest, dt.date):
        at = dt.datetime(newest.year, newest.month, newest.day, tzinfo=dt.UTC).timestamp()
    elif isinstance(newest, int | float):
        at = float(newest)
    else:
        return CheckResult(
            "freshness", rule.column, False, 0, f"column '{rule.column}' has no time values", level
        )
    age = time.time() - at
    limit = parse_duration(rule.max_age)
    hours = age / 3600
    return CheckResult(
        "freshness", rule.column, age <= limit, 0,
        f"the newest '{rule.column}' is {hours:.1f} h old, at most {rule.max_age} allowed",
        level,
    )  # fmt: skip


def _column_values(path: Path, column: str) -> Any:
    """A column's non-null values as numpy (numbers) or as text (anything else)."""
    import numpy as np
    import pyarrow as pa

    chunks = [b.column(column).drop_null() for b in _batches(path, [column])]
    values = pa.chunked_array(chunks) if chunks else pa.chunked_array([], pa.null())
    if _kind(values.type) in ("integer", "number"):
        return np.sort(values.to_numpy().astype(np.float64))
    return np.asarray(values.cast(pa.string()).to_pylist(), dtype=object)


def _distribution(
    path: Path, contract: Contract, present: set[str], base: Path
) -> list[CheckResult]:
    """Each column against the reference, with the monitor's statistics."""
    import numpy as np

    from mlcd import stats

    rule = contract.distribution
    assert rule is not None
    level = "warn" if rule.warn else "error"
    reference = Path(rule.reference)
    reference = reference if reference.is_absolute() else base / reference
    if not reference.exists():
        return [
            CheckResult(
                "distribution", None, False, 0, f"reference {rule.reference} does not exist", level
            )
        ]
    ref_columns = set(_schema(reference).names)
    columns = rule.columns or [c for c in contract.columns if c in present and c in ref_columns]
    out = []
    for column in columns:
        if column not in present or column not in ref_columns:
            out.append(
                CheckResult(
                    "distribution",
                    column,
                    False,
                    0,
                    f"column '{column}' is not in both the data and the reference",
                    level,
                )
            )
            continue
        ref, cur = _column_values(reference, column), _column_values(path, column)
        if not len(ref) or not len(cur):
            out.append(
                CheckResult(
                    "distribution",
                    column,
                    True,
                    0,
                    f"column '{column}': no values to compare",
                    level,
                )
            )
            continue
        if ref.dtype.kind == "f" and cur.dtype.kind == "f":
            norm = max(float(np.std(ref)), 1e-12)
            score = stats.wasserstein_sorted(ref, cur) / norm
            limit, what = rule.max_wasserstein, "Wasserstein distance (reference std units)"
        else:
            keys = sorted(set(ref.tolist()) | set(cur.tolist()), key=str)
            ref_counts = np.array([int((ref == k).sum()) for k in keys], dtype=np.int64)
            cur_counts = np.array([int((cur == k).sum()) for k in keys], dtype=np.int64)
            score = stats.jensenshannon(ref_counts, cur_counts)
            limit, what = rule.max_jensenshannon, "Jensen-Shannon distance"
        out.append(
            CheckResult(
                "distribution", column, bool(score <= limit), 0,
                f"column '{column}': {what} {score:.3g} from {rule.reference}, at most {limit:g}",
                level,
            )
        )  # fmt: skip
    return out


def _count_only(path: Path) -> Iterator[pa.RecordBatch]:
    """Batches without columns (a contract with no row-wise rule still counts rows)."""
    for batch in _batches(path, None):
        yield batch.select([])


def _duplicates(path: Path, columns: list[str]) -> int:
    """Rows whose ``columns`` repeat an earlier row's (nulls aside), over the whole file."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_batches(list(_batches(path, columns)))
    if not table.num_rows:
        return 0
    table = table.drop_null()
    if len(columns) == 1:
        column = table.column(columns[0])
        return int(len(column) - pc.count_distinct(column).as_py())
    grouped = table.group_by(columns).aggregate([])
    return int(table.num_rows - grouped.num_rows)


def _close(name: str, names: set[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    return found[0] if found else None
