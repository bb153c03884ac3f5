"""prepare: clean the customer table exported from the warehouse.

mlcd reads the table from the warehouse (a SQLite database, see warehouse.py) through the
``sql:`` source of this stage and writes it to ``data/warehouse.parquet`` before the stage
runs; the contract under ``data:`` in mlcd.yaml is checked on what this stage writes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill what can be derived, drop duplicates, fix the types."""
    frame = frame.drop_duplicates("customer_id").copy()
    missing = frame["total_charges"].isna()
    frame.loc[missing, "total_charges"] = (
        frame.loc[missing, "tenure_months"] * frame.loc[missing, "monthly_charges"]
    ).round(2)
    return frame.astype({"tenure_months": "int64", "support_calls": "int64", "senior": "int64"})


def main() -> None:
    raw = pd.read_parquet("data/warehouse.parquet")
    prepared = clean(raw)
    out = Path("data/prepared")
    out.mkdir(parents=True, exist_ok=True)
    prepared.to_parquet(out / "customers.parquet", index=False)
    print(f"prepared {len(prepared)} customers, churn rate {prepared['churned'].mean():.3f}")


if __name__ == "__main__":
    main()
