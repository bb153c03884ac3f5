"""Data contracts as declared under ``data:`` in ``mlcd.yaml``: what a dataset must satisfy.

```yaml
data:
  customers:
    path: data/prepared/customers.parquet
    rows: {min: 1000}
    key: [customer_id]                          # unique and never null, together
    columns:
      customer_id: {type: string, nullable: false}
      tenure_months: {type: integer, min: 0, max: 72}
      monthly_charges: {type: number, min: 10, max: 200}
      contract: {type: string, allowed: [month-to-month, one-year, two-year]}
      total_charges: {type: number, max_null_share: 0.05, warn: true}
    checks:
      - {name: billing, expr: "total_charges >= monthly_charges", warn: true}
```

A check that fails is an error (the stage that produced or reads the data fails) unless it
says ``warn: true`` (reported, nothing fails). The models live here, below ``mlcd.config``,
so that the loader validates them with the rest of the file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ColumnType = Literal["integer", "number", "string", "boolean", "datetime"]

#: ``left op right`` with ``and``; each side a column name or a number.
_TERM = r"(?:[A-Za-z_]\w*|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
COMPARISON = re.compile(rf"^\s*({_TERM})\s*(>=|<=|==|!=|>|<)\s*({_TERM})\s*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRule(_Section):
    """What one column must hold."""

    type: ColumnType | None = None
    nullable: bool = True
    max_null_share: float | None = Field(default=None, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None
    unique: bool = False
    warn: bool = False

    @model_validator(mode="after")
    def _range(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class RowCount(_Section):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class RowCheck(_Section):
    """A row-level comparison: ``total_charges >= monthly_charges``, ``tenure_months < 100``;
    several joined with ``and``."""

    expr: str
    name: str | None = None
    warn: bool = False

    @field_validator("expr")
    @classmethod
    def _parse(cls, value: str) -> str:
        for part in re.split(r"\s+and\s+", value.strip()):
            if not COMPARISON.match(part):
                raise ValueError(
                    f"cannot read {part!r} in check {value!r}: write comparisons of columns "
                    "and numbers joined by 'and', like 'total_charges >= monthly_charges and "
                    "tenure_months <= 72'"
                )
        return value.strip()


class Freshness(_Section):
    """The newest value of ``column`` (a timestamp, a date or epoch seconds) must be at most
    ``max_age`` old (``36h``, ``7d``) when the data is checked."""

    column: str
    max_age: str
    warn: bool = False

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        from mlcd.durations import DURATION

        if not DURATION.match(value):
            raise ValueError(f"max_age {value!r} is not a duration: write 36h, 7d or 2w")
        return value


class Distribution(_Section):
    """Distribution bounds against a reference table, with the monitor's statistics: for a
    numeric column the Wasserstein distance in units of the reference's standard deviation,
    for a categorical one the Jensen-Shannon distance of the category shares."""

    reference: str
    columns: list[str] = Field(default_factory=list)
    max_wasserstein: float = Field(default=0.2, gt=0)
    max_jensenshannon: float = Field(default=0.15, gt=0, le=1)
    warn: bool = False


class Contract(_Section):
    """A dataset and the rules it must meet."""

    path: str
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    key: list[str] = Field(default_factory=list)
    rows: RowCount | None = None
    freshness: Freshness | None = None
    distribution: Distribution | None = None
    checks: list[RowCheck] = Field(default_factory=list)
    allow_extra_columns: bool = True
    description: str | None = None
