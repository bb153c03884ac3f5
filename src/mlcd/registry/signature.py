"""Signature: what a model takes and returns, inferred from a sample of its training input.

Each input column records its name, dtype, kind (``numeric`` or ``categorical``), whether it
held nulls, and the range (numeric) or the categories (categorical) seen in the sample. The
server validates requests against it and monitoring uses the ranges and categories as the
first data-quality reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlcd.errors import UsageError

#: More distinct values than this and a text column is recorded without its categories.
MAX_CATEGORIES = 1000
INPUT_DATAFRAME = "dataframe"
INPUT_NDARRAY = "ndarray"


@dataclass(frozen=True)
class ColumnSpec:
    """One input column."""

    name: str
    dtype: str
    kind: str  # numeric | categorical
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "nullable": self.nullable,
        }
        if self.kind == "numeric":
            out["min"] = self.min
            out["max"] = self.max
        else:
            out["categories"] = None if self.categories is None else list(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        categories = data.get("categories")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            kind=str(data.get("kind", "numeric")),
            nullable=bool(data.get("nullable", False)),
            min=None if data.get("min") is None else float(data["min"]),
            max=None if data.get("max") is None else float(data["max"]),
            categories=None if categories is None else tuple(categories),
        )


@dataclass(frozen=True)
class OutputSpec:
    """What ``predict`` returns: a class label (with the classes) or a number."""

    task: str  # classification | regression
    dtype: str
    classes: tuple[Any, ...] | None = None
    proba: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "dtype": self.dtype,
            "classes": None if self.classes is None else list(self.classes),
            "proba": self.proba,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputSpec:
        classes = data.get("classes")
        return cls(
            task=str(data.get("task", "regression")),
            dtype=str(data.get("dtype", "float64")),
            classes=None if classes is None else tuple(classes),
            proba=bool(data.get("proba", False)),
        )


@dataclass(frozen=True)
class Signature:
    """Input columns (in the order the model expects them) and the output."""

    inputs: tuple[ColumnSpec, ...]
    output: OutputSpec
    input_type: str = INPUT_DATAFRAME  # how the flavor wants rows: dataframe | ndarray
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Input column names in order."""
        return [c.name for c in self.inputs]

    def column(self, name: str) -> ColumnSpec:
        """The spec of one input column.

        Raises:
            UsageError: no such column.
        """
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise UsageError(f"the signature has no column {name!r} (columns: {self.columns})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_type": self.input_type,
            "inputs": [c.to_dict() for c in self.inputs],
            "output": self.output.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            inputs=tuple(ColumnSpec.from_dict(c) for c in data.get("inputs") or []),
            output=OutputSpec.from_dict(data.get("output") or {}),
            input_type=str(data.get("input_type", INPUT_DATAFRAME)),
        )

    def check(self, frame: Any) -> list[str]:
        """Problems that stop ``frame`` from being scored: missing columns, wrong types.

        Values outside the training range or unseen categories are not problems here (the
        model may cope); monitoring reports them.
        """
        import pandas as pd

        problems = []
        for spec in self.inputs:
            if spec.name not in frame.columns:
                problems.append(f"missing column '{spec.name}' ({spec.dtype})")
                continue
            series = frame[spec.name]
            if not spec.nullable and bool(series.isna().any()):
                problems.append(f"column '{spec.name}' has nulls; it had none in training")
            if spec.kind == "numeric" and not (
                pd.api.types.is_numeric_dtype(series.dtype) or bool(series.isna().all())
            ):
                converted = pd.to_numeric(series, errors="coerce")
                bad = int((converted.isna() & series.notna()).sum())
                if bad:
                    problems.append(
                        f"column '{spec.name}' must be numeric ({spec.dtype}); {bad} value(s) are not"
                    )
        return problems


def _dtype_name(dtype: Any) -> str:
    return str(dtype)


def _plain(value: Any) -> Any:
    """A YAML-safe scalar: numpy scalars become Python ones, anything else its text."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def as_frame(sample: Any) -> tuple[Any, str]:
    """A DataFrame of ``sample`` and how the model took it (dataframe or ndarray).

    Raises:
        UsageError: the sample is not tabular.
    """
    import numpy as np
    import pandas as pd

    if isinstance(sample, pd.DataFrame):
        return sample, INPUT_DATAFRAME
    if isinstance(sample, pd.Series):
        return sample.to_frame(), INPUT_DATAFRAME
    if isinstance(sample, Mapping):
        return pd.DataFrame(dict(sample)), INPUT_DATAFRAME
    if isinstance(sample, np.ndarray):
        if sample.ndim == 1:
            sample = sample.reshape(-1, 1)
        if sample.ndim != 2:
            raise UsageError(
                f"sample_input must be 2-D (rows x columns), got shape {sample.shape}",
                hint="pass a pandas DataFrame or a 2-D numpy array of a few training rows",
            )
        return pd.DataFrame(sample, columns=[f"x{i}" for i in range(sample.shape[1])]), (
            INPUT_NDARRAY
        )
    if isinstance(sample, Sequence) and sample and isinstance(sample[0], Mapping):
        return pd.DataFrame(list(sample)), INPUT_DATAFRAME
    raise UsageError(
        f"cannot infer a signature from {type(sample).__name__}",
        hint="pass sample_input as a pandas DataFrame, a dict of columns or a 2-D numpy array",
    )


def infer_inputs(frame: Any) -> tuple[ColumnSpec, ...]:
    """Column specs of a DataFrame: ranges for numbers, categories for the rest."""
    import numpy as np
    import pandas as pd

    specs = []
    for name in frame.columns:
        series = frame[name]
        nullable = bool(series.isna().any())
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype):
            specs.append(
                ColumnSpec(
                    str(name),
                    _dtype_name(dtype),
                    "categorical",
                    nullable,
                    None,
                    None,
                    (False, True),
                )
            )
        elif pd.api.types.is_numeric_dtype(dtype):
            # numpy directly: pandas' reductions cost ~0.5 ms a column on small samples
            values = series.to_numpy(dtype="float64", na_value=np.nan)
            values = values[np.isfinite(values)]
            specs.append(
                ColumnSpec(
                    str(name),
                    _dtype_name(dtype),
                    "numeric",
                    nullable,
                    float(values.min()) if values.size else None,
                    float(values.max()) if values.size else None,
                )
            )
        else:
            distinct = series.dropna().unique()
            categories: tuple[Any, ...] | None = None
            # Timestamps are not categories: record the column, leave it unbounded.
            if len(distinct) <= MAX_CATEGORIES and not pd.api.types.is_datetime64_any_dtype(dtype):
                categories = tuple(sorted((_plain(v) for v in distinct), key=lambda v: str(v)))
            specs.append(
                ColumnSpec(
                    str(name), _dtype_name(dtype), "categorical", nullable, None, None, categories
                )
            )
    return tuple(specs)


def infer_output(predictions: Any, classes: Sequence[Any] | None, proba: bool) -> OutputSpec:
    """The output spec from a model's predictions on the sample and its classes, if any."""
    import numpy as np

    if predictions is not None:
        dtype = str(np.asarray(predictions).dtype)
    elif classes is not None:
        dtype = str(np.asarray(list(classes)).dtype)
    else:
        dtype = "float64"
    if classes is not None:
        return OutputSpec("classification", dtype, tuple(_plain(c) for c in classes), proba)
    return OutputSpec("regression", dtype, None, False)
