"""prepare: export the customer table from the warehouse, then clean it like a raw export.

The warehouse is simulated (see customers.py): ``warehouse/market.yaml`` says which market it
holds now. The retrain policy in mlcd.yaml runs this stage first (``refresh_stage``), so a
retrain learns from the customers of today's market, not last quarter's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from common import params
from customers import current_market, generate


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill what can be derived, drop duplicates, fix the types."""
    frame = frame.drop_duplicates("customer_id").copy()
    missing = frame["total_charges"].isna()
    frame.loc[missing, "total_charges"] = (
        frame.loc[missing, "tenure_months"] * frame.loc[missing, "monthly_charges"]
    ).round(2)
    return frame.astype({"tenure_months": "int64", "support_calls": "int64", "senior": "int64"})


def main() -> None:
    p = params()
    market = current_market()
    rng = np.random.default_rng(p["seed"])
    raw = generate(p["prepare"]["n_customers"], rng, market, p["prepare"]["missing_share"])
    prepared = clean(raw)
    out = Path("data/prepared")
    out.mkdir(parents=True, exist_ok=True)
    prepared.to_parquet(out / "customers.parquet", index=False)
    print(
        f"prepared {len(prepared)} customers of the {market} market, "
        f"churn rate {prepared['churned'].mean():.3f}"
    )


if __name__ == "__main__":
    main()
