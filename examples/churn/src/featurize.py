"""featurize: a stratified train/test split and a description of the feature columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from common import CATEGORICAL, FEATURES, NUMERIC, TARGET, params, write_json
from sklearn.model_selection import train_test_split


def main() -> None:
    p = params()
    frame = pd.read_parquet("data/prepared/customers.parquet")
    columns = [*FEATURES, TARGET]
    train, test = train_test_split(
        frame[columns],
        test_size=p["featurize"]["test_size"],
        random_state=p["seed"],
        stratify=frame[TARGET],
    )
    out = Path("data/features")
    out.mkdir(parents=True, exist_ok=True)
    train.to_parquet(out / "train.parquet", index=False)
    test.to_parquet(out / "test.parquet", index=False)
    write_json(
        str(out / "schema.json"),
        {
            "target": TARGET,
            "numeric": NUMERIC,
            "categorical": CATEGORICAL,
            "rows": {"train": len(train), "test": len(test)},
        },
    )
    print(f"train {len(train)} rows, test {len(test)} rows")


if __name__ == "__main__":
    main()
