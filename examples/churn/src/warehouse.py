"""The customer warehouse: a SQLite database outside the pipeline, filled from the simulator.

Run it once (``python src/warehouse.py``, ``make demo`` does) to create
``warehouse/shop.db`` with the customers of the market ``warehouse/market.yaml`` names. The
pipeline's ``prepare`` stage reads it through a ``sql:`` source (mlcd.yaml): mlcd queries the
table before the stage is judged, so a changed table re-runs what depends on it, and an
unchanged one restores from the run cache. In a real project this is your warehouse.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np
from common import params
from customers import current_market, generate

DATABASE = Path("warehouse") / "shop.db"


def main() -> None:
    p = params()
    market = current_market()
    rng = np.random.default_rng(p["seed"])
    frame = generate(p["prepare"]["n_customers"], rng, market, p["prepare"]["missing_share"])
    DATABASE.parent.mkdir(parents=True, exist_ok=True)
    temp = DATABASE.with_suffix(".tmp")
    temp.unlink(missing_ok=True)
    with sqlite3.connect(temp) as conn:
        frame.to_sql("customers", conn, index=False)
    temp.replace(DATABASE)
    print(
        f"warehouse: {len(frame)} customers of the {market} market in {DATABASE}", file=sys.stderr
    )


if __name__ == "__main__":
    main()
