"""Request validation: JSON bodies of every accepted shape, checked against a model signature.

Every problem with a request becomes a :class:`RequestError` carrying the HTTP status
(400 malformed, 413 too big, 415 unsafe content type, 422 does not fit the signature) and a
message naming the column and row, so that bad input is never a 500.

The hot path is a single JSON record of numbers: :meth:`InputPlan.from_records` checks it
with plain Python type tests and builds one float64 matrix, without pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlcd.registry.signature import INPUT_NDARRAY, ColumnSpec, Signature

#: Body wrappers MLflow's scoring server accepts, so MLflow clients work unchanged.
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
#: Content types that are JSON; anything else is refused with 415.
JSON_TYPES = ("application/json", "text/json")
_NUMBER = (float, int)
_PLAIN = frozenset(_NUMBER)
_MISSING = object()


class RequestError(Exception):
    """A request the server refuses: HTTP status, message and, when known, column and row."""

    def __init__(
        self, status: int, message: str, *, column: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.column = column
        self.row = row

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body of mlcd's own endpoints."""
        out: dict[str, Any] = {"error": self.message, "status": self.status}
        if self.column is not None:
            out["column"] = self.column
        if self.row is not None:
            out["row"] = self.row
        return out


def check_content_type(value: str | None) -> None:
    """Accept JSON (or no content type); refuse pickle and everything else with 415.

    Raises:
        RequestError: 415 for any other content type.
    """
    if not value:
        return
    kind = value.split(";", 1)[0].strip().lower()
    if kind in JSON_TYPES or kind.endswith("+json"):
        return
    unsafe = " (pickled data can run code on the server)" if "pickle" in kind else ""
    raise RequestError(
        415,
        f"content type {kind!r} is not accepted{unsafe}: send JSON with "
        "'Content-Type: application/json'",
    )


def parse_json(body: bytes) -> Any:
    """Decode a JSON body.

    Raises:
        RequestError: 400 when the body is empty or not JSON.
    """
    import orjson

    if not body:
        raise RequestError(400, "the request body is empty: send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None


@dataclass
class Inputs:
    """Validated rows: a float64 matrix (all-numeric models) or one list per column."""

    rows: int
    names: list[str]
    matrix: Any = None  # numpy (rows x columns) float64, for all-numeric signatures
    columns: dict[str, list[Any]] | None = None  # otherwise, name -> values

    def column_values(self) -> dict[str, Any]:
        """Each column's values (numpy array or list), for the prediction log."""
        if self.matrix is not None:
            return {name: self.matrix[:, j] for j, name in enumerate(self.names)}
        assert self.columns is not None
        return self.columns


@dataclass
class InputPlan:
    """A signature compiled for fast checking; one per loaded model version."""

    signature: Signature
    max_rows: int = 10_000
    #: the training data's contract (``model.yaml`` ``contract``): its error rules refuse rows
    contract: Mapping[str, Any] = field(default_factory=dict)
    specs: list[ColumnSpec] = field(init=False)
    names: list[str] = field(init=False)
    numeric_only: bool = field(init=False)
    #: every column, without values: what the prediction log takes as the layout of a
    #: request's matrix (or as the null inputs of a rejected one). Read-only.
    no_values: dict[str, None] = field(init=False)
    _index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.specs = list(self.signature.inputs)
        self.names = [s.name for s in self.specs]
        self._index = {name: i for i, name in enumerate(self.names)}
        self.no_values = dict.fromkeys(self.names)
        # One float matrix is exact only when every column is a float (or a NaN-able number).
        self.numeric_only = bool(self.specs) and all(
            s.kind == "numeric" and s.dtype.startswith("float") for s in self.specs
        )

    # ------------------------------------------------------------------ payload shapes
    def parse(self, payload: Any) -> Inputs:
        """Validate any accepted body shape for ``/v1/models/{name}/predict``.

        Raises:
            RequestError: 400 for an unknown shape, 413 for too many rows, 422 for values.
        """
        if isinstance(payload, list):
            return self._from_list(payload, "the body")
        if not isinstance(payload, dict):
            raise RequestError(400, _SHAPES_HELP.format(got=type(payload).__name__))
        if "columns" in payload and "data" in payload:
            return self.from_split(payload, "the body")
        if "dataframe_split" in payload:
            split = payload["dataframe_split"]
            if not isinstance(split, dict) or "data" not in split:
                raise RequestError(
                    400, "'dataframe_split' must be an object with 'columns' and 'data'"
                )
            return self.from_split(split, "'dataframe_split'")
        if "dataframe_records" in payload:
            records = payload["dataframe_records"]
            if not isinstance(records, list):
                raise RequestError(400, "'dataframe_records' must be a list of row objects")
            return self._from_list(records, "'dataframe_records'")
        for key in ("instances", "inputs"):
            if key in payload:
                value = payload[key]
                if isinstance(value, dict):
                    return self.from_columns(value, f"'{key}'")
                if isinstance(value, list):
                    return self._from_list(value, f"'{key}'")
                raise RequestError(
                    400, f"'{key}' must be a list of rows or an object of column lists"
                )
        raise RequestError(400, _SHAPES_HELP.format(got="an object with keys " + _keys(payload)))

    def _from_list(self, items: list[Any], where: str) -> Inputs:
        if not items:
            raise RequestError(422, f"{where} holds no rows: send at least one row")
        self._check_rows(len(items))
        first = items[0]
        if isinstance(first, dict):
            return self.from_records(items, where)
        if isinstance(first, list):
            return self.from_matrix(items, self.names, where)
        if len(self.names) == 1:  # a single-column model takes a flat list of values
            return self.from_matrix([[v] for v in items], self.names, where)
        raise RequestError(
            400,
            f"{where} must hold row objects ({{column: value}}) or row lists, "
            f"not {type(first).__name__}",
        )

    def _check_rows(self, rows: int) -> None:
        if rows > self.max_rows:
            raise RequestError(
                413,
                f"the request has {rows} rows, more than the limit of {self.max_rows}: "
                "split it into smaller requests (or raise serve.max_rows)",
            )

    # ------------------------------------------------------------------ builders
    def from_records(self, records: list[Any], where: str = "the body") -> Inputs:
        """Rows as ``[{column: value}, ...]``.

        Raises:
            RequestError: 413 or 422 naming the column and row.
        """
        self._check_rows(len(records))
        names = self.names
        width = len(names)
        if self.numeric_only:
            rows: list[list[Any]] = []
            for r, record in enumerate(records):
                if not isinstance(record, dict):
                    raise RequestError(
                        422, f"row {r} of {where} is a {type(record).__name__}, not an object",
                        row=r,
                    )  # fmt: skip
                if len(record) != width:
                    self._check_keys(record, r)
                row = []
                for j, name in enumerate(names):
                    value = record.get(name, _MISSING)
                    if type(value) not in _NUMBER:
                        if value is _MISSING:
                            self._check_keys(record, r)
                        value = self._number(value, self.specs[j], r)
                    row.append(value)
                rows.append(row)
            return self._matrix(rows)
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for r, record in enumerate(records):
            if not isinstance(record, dict):
                raise RequestError(
                    422, f"row {r} of {where} is a {type(record).__name__}, not an object", row=r
                )
            if len(record) != width:
                self._check_keys(record, r)
            for spec in self.specs:
                value = record.get(spec.name, _MISSING)
                if value is _MISSING:
                    self._check_keys(record, r)
                columns[spec.name].append(value)
        return self.from_columns(columns, where, checked=True)

    def from_split(self, split: Mapping[str, Any], where: str) -> Inputs:
        """Rows as ``{"columns": [...], "data": [[...], ...]}`` (columns default to the signature's).

        Raises:
            RequestError: 400, 413 or 422.
        """
        data = split.get("data")
        columns = split.get("columns", self.names)
        if not isinstance(data, list) or not isinstance(columns, list):
            raise RequestError(400, f"{where} needs 'columns' (a list) and 'data' (a list of rows)")
        if not data:
            raise RequestError(422, f"{where} holds no rows: send at least one row")
        return self.from_matrix(data, [str(c) for c in columns], where)

    def from_matrix(self, data: list[Any], columns: list[str], where: str = "the body") -> Inputs:
        """Positional rows whose values follow ``columns``.

        Raises:
            RequestError: 413 or 422.
        """
        self._check_rows(len(data))
        self._check_column_set(columns)
        width = len(columns)
        for r, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise RequestError(
                    422,
                    f"row {r} of {where} has {got} values, expected {width} "
                    f"(columns: {', '.join(columns)})",
                    row=r,
                )
        if self.numeric_only and columns == self.names:
            rows = data
            for r, row in enumerate(rows):
                for j, value in enumerate(row):
                    if type(value) not in _NUMBER:
                        row[j] = self._number(value, self.specs[j], r)
            return self._matrix(rows)
        position = {name: j for j, name in enumerate(columns)}
        by_name = {name: [row[position[name]] for row in data] for name in self.names}
        return self.from_columns(by_name, where, checked=True)

    def from_columns(
        self, columns: Mapping[str, Any], where: str = "the body", checked: bool = False
    ) -> Inputs:
        """Rows as ``{column: [values...]}``.

        Raises:
            RequestError: 413 or 422.
        """
        if not checked:
            self._check_column_set(list(columns))
            lengths = {name: len(v) if isinstance(v, list) else -1 for name, v in columns.items()}
            bad = [name for name, n in lengths.items() if n < 0]
            if bad:
                raise RequestError(
                    422, f"column '{bad[0]}' of {where} must be a list of values", column=bad[0]
                )
            if len(set(lengths.values())) > 1:
                raise RequestError(422, f"the columns of {where} have different lengths: {lengths}")
        rows = len(columns[self.names[0]]) if self.names else 0
        if rows == 0:
            raise RequestError(422, f"{where} holds no rows: send at least one row")
        self._check_rows(rows)
        out: dict[str, list[Any]] = {}
        for spec in self.specs:
            values = list(columns[spec.name])
            if spec.kind == "numeric":
                for r, value in enumerate(values):
                    if type(value) not in _NUMBER:
                        values[r] = self._number(value, spec, r)
            else:
                for r, value in enumerate(values):
                    values[r] = self._category(value, spec, r)
            out[spec.name] = values
        if self.numeric_only:
            import numpy as np

            return Inputs(
                rows,
                self.names,
                matrix=np.array([out[n] for n in self.names], dtype=np.float64).T.copy(),
            )
        return Inputs(rows, self.names, columns=out)

    def from_numbers(self, flat: list[Any], rows: int) -> Inputs | None:
        """``rows`` rows given row after row in one flat list (``rows x columns`` values),
        when the model takes only floats and every value is a plain ``int`` or ``float``:
        what :meth:`from_matrix` would accept unchanged, at a fraction of its cost. None for
        anything else (the general builders check it and say what is wrong).

        Raises:
            RequestError: 413 for too many rows.
        """
        width = len(self.names)
        if not self.numeric_only or rows <= 0 or len(flat) != rows * width:
            return None
        if not _PLAIN.issuperset(map(type, flat)):
            return None
        self._check_rows(rows)
        import numpy as np

        return Inputs(
            rows, self.names, matrix=np.array(flat, dtype=np.float64).reshape(rows, width)
        )

    def _matrix(self, rows: list[list[Any]]) -> Inputs:
        import numpy as np

        return Inputs(len(rows), self.names, matrix=np.array(rows, dtype=np.float64))

    # ------------------------------------------------------------------ value checks
    def _number(self, value: Any, spec: ColumnSpec, row: int) -> float:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if not spec.nullable:
                raise RequestError(
                    422,
                    f"column '{spec.name}' row {row}: null, but '{spec.name}' had no nulls "
                    "in training: send a number",
                    column=spec.name,
                    row=row,
                )
            return math.nan
        if value is _MISSING:
            raise RequestError(
                422, f"column '{spec.name}' row {row}: missing", column=spec.name, row=row
            )
        if isinstance(value, bool):
            raise RequestError(
                422,
                f"column '{spec.name}' row {row}: got a boolean ({value!r}), "
                f"expected a number ({spec.dtype})",
                column=spec.name,
                row=row,
            )
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
        if isinstance(value, _NUMBER):
            return value
        raise RequestError(
            422,
            f"column '{spec.name}' row {row}: {_show(value)} is not a number ({spec.dtype})",
            column=spec.name,
            row=row,
        )

    def _category(self, value: Any, spec: ColumnSpec, row: int) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if not spec.nullable:
                raise RequestError(
                    422,
                    f"column '{spec.name}' row {row}: null, but '{spec.name}' had no nulls "
                    "in training: send a value",
                    column=spec.name,
                    row=row,
                )
            return None
        if spec.dtype == "bool":
            if isinstance(value, bool):
                return value
            raise RequestError(
                422,
                f"column '{spec.name}' row {row}: {_show(value)} is not a boolean (true/false)",
                column=spec.name,
                row=row,
            )
        if isinstance(value, dict | list):
            raise RequestError(
                422,
                f"column '{spec.name}' row {row}: {_show(value)} is not a category value",
                column=spec.name,
                row=row,
            )
        return value

    def _check_keys(self, record: Mapping[str, Any], row: int) -> None:
        missing = [n for n in self.names if n not in record]
        extra = [str(k) for k in record if k not in self._index]
        if missing:
            raise RequestError(
                422,
                f"row {row}: missing column '{missing[0]}'"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f"; the model takes: {', '.join(self.names)}",
                column=missing[0],
                row=row,
            )
        if extra:
            raise RequestError(
                422,
                f"row {row}: unexpected column '{extra[0]}'; the model takes only: "
                + ", ".join(self.names),
                column=extra[0],
                row=row,
            )

    def _check_column_set(self, columns: Sequence[str]) -> None:
        known = set(columns)
        if len(known) != len(columns):
            dup = next(c for c in columns if list(columns).count(c) > 1)
            raise RequestError(422, f"column '{dup}' is given twice", column=dup)
        for name in self.names:
            if name not in known:
                raise RequestError(
                    422,
                    f"missing column '{name}'; the model takes: {', '.join(self.names)}",
                    column=name,
                )
        for name in columns:
            if name not in self._index:
                raise RequestError(
                    422,
                    f"unexpected column '{name}'; the model takes only: {', '.join(self.names)}",
                    column=name,
                )

    # ------------------------------------------------------------------ model input
    def check_contract(self, inputs: Inputs) -> None:
        """Refuse rows that break an error rule of the training data's contract (the same
        rules ``mlcd data validate`` and the pipeline check, by the same names).

        Raises:
            RequestError: 422 naming the column, row, value, rule and contract.
        """
        rules = self.contract.get("columns") or {}
        if not rules:
            return
        import numpy as np

        name = self.contract.get("name", "training data")
        values = inputs.column_values()
        for column, rule in rules.items():
            if rule.get("warn") or column not in values:
                continue
            data = values[column]
            if rule.get("min") is not None or rule.get("max") is not None:
                array = np.asarray(data, dtype=np.float64)
                for bound, bad in (("min", array < rule.get("min", -np.inf)),
                                   ("max", array > rule.get("max", np.inf))):  # fmt: skip
                    if rule.get(bound) is not None and bad.any():
                        r = int(np.flatnonzero(bad)[0])
                        word = "below the minimum" if bound == "min" else "above the maximum"
                        raise RequestError(
                            422,
                            f"column '{column}' row {r}: {_show(data[r])} is {word} "
                            f"{rule[bound]:g} of data contract '{name}' (rule {bound})",
                            column=column,
                            row=r,
                        )
            allowed = rule.get("allowed")
            if allowed is not None:
                for r, value in enumerate(data):
                    if value is not None and value == value and not _allowed(value, allowed):
                        raise RequestError(
                            422,
                            f"column '{column}' row {r}: {_show(value)} is not one of the "
                            f"allowed values of data contract '{name}' (rule allowed)",
                            column=column,
                            row=r,
                        )
            if rule.get("nullable") is False:
                for r, value in enumerate(data):
                    if value is None or value != value:
                        raise RequestError(
                            422,
                            f"column '{column}' row {r}: null, but data contract '{name}' "
                            "allows none (rule nullable)",
                            column=column,
                            row=r,
                        )

    def model_input(self, inputs: Inputs) -> Any:
        """The rows in the form the model's flavor wants (DataFrame or ndarray)."""
        import numpy as np

        if self.signature.input_type == INPUT_NDARRAY:
            if inputs.matrix is not None:
                return inputs.matrix
            assert inputs.columns is not None
            return np.array([inputs.columns[n] for n in self.names], dtype=object).T
        import pandas as pd

        if inputs.matrix is not None:
            return pd.DataFrame(inputs.matrix, columns=self.names, copy=False)
        assert inputs.columns is not None
        data = {}
        for spec in self.specs:
            values = inputs.columns[spec.name]
            if spec.kind == "numeric":
                array = np.asarray(values, dtype=np.float64)
                if spec.dtype.startswith(("int", "uint")) and not np.isnan(array).any():
                    if not np.all(array == np.round(array)):
                        r = int(np.flatnonzero(array != np.round(array))[0])
                        raise RequestError(
                            422,
                            f"column '{spec.name}' row {r}: {values[r]!r} is not a whole "
                            f"number ({spec.dtype})",
                            column=spec.name,
                            row=r,
                        )
                    array = array.astype(spec.dtype)
                data[spec.name] = array
            elif spec.dtype == "bool":
                data[spec.name] = pd.array(values, dtype="boolean" if spec.nullable else "bool")
            elif spec.dtype == "category":
                data[spec.name] = pd.Categorical(values, categories=spec.categories)
            else:
                data[spec.name] = pd.array(values, dtype=object)
        return pd.DataFrame(data)

    def warmup_input(self) -> Inputs:
        """One plausible row (mid-range numbers, first categories) to warm a new model."""
        record: dict[str, Any] = {}
        for spec in self.specs:
            if spec.kind == "numeric":
                low = spec.min if spec.min is not None else 0.0
                high = spec.max if spec.max is not None else low
                middle = (low + high) / 2
                record[spec.name] = (
                    float(math.floor(middle)) if spec.dtype.startswith(("int", "uint")) else middle
                )
            elif spec.categories:
                record[spec.name] = spec.categories[0]
            elif spec.dtype == "bool":
                record[spec.name] = False
            else:
                record[spec.name] = None if spec.nullable else ""
        return self.from_records([record])


def _allowed(value: Any, allowed: Sequence[Any]) -> bool:
    """Whether ``value`` is one of ``allowed``; numbers compare as numbers (a JSON or logged
    ``0.0`` is the allowed ``0``), anything else as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return any(
            isinstance(a, int | float) and not isinstance(a, bool) and float(a) == float(value)
            for a in allowed
        ) or str(value) in {str(a) for a in allowed}
    return str(value) in {str(a) for a in allowed}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _keys(payload: Mapping[str, Any]) -> str:
    keys = list(payload)[:6]
    return ", ".join(repr(k) for k in keys) if keys else "(none)"


_SHAPES_HELP = (
    "cannot read rows from {got}: send a list of row objects [{{column: value}}, ...], "
    '{{"columns": [...], "data": [[...], ...]}}, or MLflow\'s '
    '{{"dataframe_split": ...}}, {{"dataframe_records": [...]}}, {{"instances": [...]}} '
    'or {{"inputs": ...}}'
)
