"""The simulated customer base: who the customers are and whether they leave, per market.

Nothing is downloaded: customers are drawn from a seeded random generator, and whether each
one churned follows a logistic model of their contract, tenure, charges and support calls.
A *market* sets both: ``baseline`` is the world the first model learns; ``price_war`` is the
world after a competitor's fibre offer (new, shorter-tenured customers on dearer fibre plans
who call support more, and who leave more readily when the bill is high).

``warehouse/market.yaml`` says which market the company's customer warehouse holds now; the
``prepare`` stage exports from it (the retrain policy re-runs ``prepare`` to refresh the
data), and ``examples/demo.py`` draws its live traffic from the same markets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


@dataclass(frozen=True)
class Market:
    """Who the customers are, and how they decide to leave."""

    contract: tuple[float, float, float]  # month-to-month, one-year, two-year
    internet: tuple[float, float, float]  # dsl, fiber, none
    tenure_scale: float  # months; the mean tenure is 1.6x this
    monthly_shift: float  # added to every monthly bill
    support_rate: float  # mean support calls per month
    intercept: float
    charge_effect: float  # churn log-odds per unit of (monthly - 65)
    fiber_effect: float


MARKETS = {
    "baseline": Market(
        contract=(0.55, 0.25, 0.20),
        internet=(0.35, 0.45, 0.20),
        tenure_scale=18.0,
        monthly_shift=0.0,
        support_rate=1.2,
        intercept=-1.6,
        charge_effect=0.018,
        fiber_effect=0.45,
    ),
    "price_war": Market(
        contract=(0.75, 0.15, 0.10),
        internet=(0.15, 0.75, 0.10),
        tenure_scale=8.0,
        monthly_shift=22.0,
        support_rate=2.6,
        intercept=-3.6,
        charge_effect=0.045,
        fiber_effect=1.6,
    ),
}

WAREHOUSE = Path("warehouse") / "market.yaml"


def current_market(root: Path = Path(".")) -> str:
    """The market the warehouse holds now (``baseline`` when nobody said otherwise)."""
    path = root / WAREHOUSE
    if not path.is_file():
        return "baseline"
    name = str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("market", "baseline"))
    if name not in MARKETS:
        raise SystemExit(f"{path}: market must be one of {', '.join(MARKETS)}, not {name!r}")
    return name


def generate(
    n: int, rng: np.random.Generator, market: str = "baseline", missing_share: float = 0.0
) -> pd.DataFrame:
    """``n`` customers of ``market`` with their churn label, gaps included as an export has."""
    m = MARKETS[market]
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n, p=list(m.contract))
    internet = rng.choice(["dsl", "fiber", "none"], n, p=list(m.internet))
    payment = rng.choice(
        ["electronic-check", "mailed-check", "bank-transfer", "credit-card"],
        n,
        p=[0.35, 0.2, 0.225, 0.225],
    )
    tenure = np.clip(rng.gamma(1.6, m.tenure_scale, n), 0, 72).round().astype(int)
    monthly = np.clip(
        rng.normal(65 + m.monthly_shift, 25, n)
        + np.where(internet == "fiber", 18, 0)
        - np.where(internet == "none", 35, 0),
        18,
        160,
    ).round(2)
    total = (tenure * monthly * rng.normal(1.0, 0.03, n)).round(2)
    support = rng.poisson(m.support_rate + (internet == "fiber") * 0.6, n)
    senior = (rng.random(n) < 0.16).astype(int)
    logit = (
        m.intercept
        + 1.3 * (contract == "month-to-month")
        - 0.9 * (contract == "two-year")
        - 0.035 * tenure
        + m.charge_effect * (monthly - 65)
        + 0.38 * support
        + m.fiber_effect * (internet == "fiber")
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
