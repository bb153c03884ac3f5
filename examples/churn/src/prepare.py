"""prepare: generate a realistic customer table, then clean it like a raw export.

Nothing is downloaded: customers are drawn from a seeded random generator, and whether each
one churned follows a logistic model of their contract, tenure, charges and support calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from common import params


def generate(n: int, missing_share: float, rng: np.random.Generator) -> pd.DataFrame:
    """A raw customer table, including the gaps a billing export has."""
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.55, 0.25, 0.20])
    internet = rng.choice(["dsl", "fiber", "none"], n, p=[0.35, 0.45, 0.20])
    payment = rng.choice(
        ["electronic-check", "mailed-check", "bank-transfer", "credit-card"],
        n,
        p=[0.35, 0.2, 0.225, 0.225],
    )
    tenure = np.clip(rng.gamma(1.6, 18.0, n), 0, 72).round().astype(int)
    monthly = np.clip(
        rng.normal(65, 25, n)
        + np.where(internet == "fiber", 18, 0)
        - np.where(internet == "none", 35, 0),
        18,
        120,
    ).round(2)
    total = (tenure * monthly * rng.normal(1.0, 0.03, n)).round(2)
    support = rng.poisson(1.2 + (internet == "fiber") * 0.6, n)
    senior = (rng.random(n) < 0.16).astype(int)
    logit = (
        -1.6
        + 1.3 * (contract == "month-to-month")
        - 0.9 * (contract == "two-year")
        - 0.035 * tenure
        + 0.018 * (monthly - 65)
        + 0.38 * support
        + 0.45 * (internet == "fiber")
        + 0.5 * (payment == "electronic-check")
        + 0.3 * senior
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support,
            "senior": senior,
            "contract": contract,
            "payment_method": payment,
            "internet_service": internet,
            "churned": churned,
        }
    )
    gaps = rng.random(n) < missing_share
    frame.loc[gaps, "total_charges"] = np.nan
    return frame


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
    rng = np.random.default_rng(p["seed"])
    raw = generate(p["prepare"]["n_customers"], p["prepare"]["missing_share"], rng)
    prepared = clean(raw)
    out = Path("data/prepared")
    out.mkdir(parents=True, exist_ok=True)
    prepared.to_parquet(out / "customers.parquet", index=False)
    print(f"prepared {len(prepared)} customers, churn rate {prepared['churned'].mean():.3f}")


if __name__ == "__main__":
    main()
