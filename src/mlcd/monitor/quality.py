"""Data quality of a window against the reference: missing, out of range, unseen, invalid, rejected.

Every figure is a count and a share, next to the reference's own share where it has one
(a column that was 20 % empty in training is not broken when it is 20 % empty today).

A column breaches when
* its missing share (missing plus invalid values, over the accepted rows) is above
  ``max_missing_share`` and above the reference's missing share;
* its out-of-range share (numeric values outside the training ``[min, max]``, infinities
  included) or unseen share (categories the training data never had) is above
  ``max_out_of_range_share``;
* it is absent from the window altogether.
The window breaches when the server rejected more than ``max_missing_share`` of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlcd.monitor.current import WindowSummary
from mlcd.monitor.profile import ReferenceProfile
from mlcd.monitor.summary import OTHER

_EXAMPLES = 5


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class FeatureQuality:
    """Quality figures of one column."""

    name: str
    kind: str
    rows: int
    missing: int
    invalid: int
    missing_share: float
    reference_missing_share: float
    out_of_range: int = 0
    out_of_range_share: float = 0.0
    unseen: int = 0
    unseen_share: float = 0.0
    unseen_examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class QualityReport:
    """Quality of every column and of the window as a whole."""

    rows: int
    rejected: int
    rejection_errors: dict[str, int]
    features: list[FeatureQuality]
    missing_columns: list[str]
    extra_columns: list[str]
    max_missing_share: float
    max_out_of_range_share: float

    @property
    def rejected_share(self) -> float:
        """Share of rows the server rejected."""
        return _share(self.rejected, self.rows)

    @property
    def missing_share(self) -> float:
        """Missing or invalid cells over all input cells of accepted rows."""
        cells = sum(f.rows for f in self.features)
        return _share(sum(f.missing + f.invalid for f in self.features), cells)

    @property
    def out_of_range_share(self) -> float:
        """Out-of-range numeric values and unseen categories over all present values."""
        present = sum(f.rows - f.missing - f.invalid for f in self.features)
        return _share(sum(f.out_of_range + f.unseen for f in self.features), present)

    @property
    def breaches(self) -> list[str]:
        """Every threshold crossed, as a sentence."""
        found = [f"{f.name}: {p}" for f in self.features for p in f.problems]
        found += [f"{name}: column missing from the window" for name in self.missing_columns]
        if self.rows and self.rejected_share > self.max_missing_share:
            found.append(
                f"the server rejected {self.rejected} of {self.rows} rows "
                f"({self.rejected_share:.1%} > {self.max_missing_share:.1%})"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rejected": self.rejected,
            "rejected_share": self.rejected_share,
            "rejection_errors": self.rejection_errors,
            "missing_share": self.missing_share,
            "out_of_range_share": self.out_of_range_share,
            "max_missing_share": self.max_missing_share,
            "max_out_of_range_share": self.max_out_of_range_share,
            "missing_columns": self.missing_columns,
            "extra_columns": self.extra_columns,
            "breaches": self.breaches,
            "features": [f.to_dict() for f in self.features],
        }


def assess_quality(
    profile: ReferenceProfile,
    window: WindowSummary,
    max_missing_share: float = 0.1,
    max_out_of_range_share: float = 0.1,
) -> QualityReport:
    """Quality of the window's columns against the reference."""
    features = []
    for name, ref in profile.features.items():
        cur = window.columns.get(name)
        if cur is None:
            continue
        ref_missing = _share(ref.summary.missing + ref.summary.invalid, ref.summary.rows)
        missing_share = _share(cur.missing + cur.invalid, cur.rows)
        problems = []
        if missing_share > max_missing_share and missing_share > ref_missing:
            problems.append(
                f"{missing_share:.1%} missing or invalid (threshold {max_missing_share:.1%}, "
                f"reference {ref_missing:.1%})"
            )
        values = cur.rows - cur.missing - cur.invalid
        if cur.kind == "numeric":
            out = cur.out_of_range
            out_share = _share(out, values)
            if out_share > max_out_of_range_share:
                problems.append(
                    f"{out_share:.1%} outside the training range [{ref.summary.min:.6g}, "
                    f"{ref.summary.max:.6g}] (threshold {max_out_of_range_share:.1%})"
                )
            features.append(
                FeatureQuality(
                    name,
                    "numeric",
                    cur.rows,
                    cur.missing,
                    cur.invalid,
                    missing_share,
                    ref_missing,
                    out_of_range=out,
                    out_of_range_share=out_share,
                    problems=problems,
                )
            )
            continue
        unseen_share = _share(cur.unseen, values)
        known = ref.known
        examples = sorted(
            (k for k in cur.categories if k not in known and k != OTHER),
            key=lambda k: -cur.categories[k],
        )[:_EXAMPLES]
        if unseen_share > max_out_of_range_share:
            problems.append(
                f"{unseen_share:.1%} categories never seen in training, e.g. "
                f"{', '.join(repr(e) for e in examples)} (threshold {max_out_of_range_share:.1%})"
            )
        features.append(
            FeatureQuality(
                name,
                "categorical",
                cur.rows,
                cur.missing,
                cur.invalid,
                missing_share,
                ref_missing,
                unseen=cur.unseen,
                unseen_share=unseen_share,
                unseen_examples=examples,
                problems=problems,
            )
        )
    return QualityReport(
        rows=window.rows,
        rejected=window.rejected,
        rejection_errors=window.rejection_errors,
        features=features,
        missing_columns=list(window.missing_columns),
        extra_columns=list(window.extra_columns),
        max_missing_share=max_missing_share,
        max_out_of_range_share=max_out_of_range_share,
    )
