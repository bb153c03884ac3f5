"""Frictions of issue 19 in tracking: how ``mlcd diff`` words a change."""

from __future__ import annotations

import pytest

from mlcd.tracking.diff import DiffRow, format_change


@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        (0.9763, 0.9763 + 1.36699e-05, "+1.37e-05 (+0.0014%)"),
        (0.80, 0.81, "+0.01 (+1.3%)"),
        (100, 250, "+150 (+150.0%)"),
        (0.5, 0.25, "-0.25 (-50.0%)"),
        (0.0, 0.3, "+0.3"),
    ],
)
def test_diff_change_keeps_significant_digits(old: float, new: float, shown: str) -> None:
    assert format_change(DiffRow("metric", "auc", old, new)) == shown
