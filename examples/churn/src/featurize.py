"""featurize: a stratified train/test split, joined by production's labelled traffic once it arrives.

The warehouse export is split into train and test as usual. mlcd writes the server's labelled
traffic (``from_log`` in mlcd.yaml) before this stage runs: ``data/labelled.parquet`` holds the
rows no earlier training used (the newest window), ``data/replay.parquet`` a bounded sample of
older windows. Once there are enough new rows, a share of them (chosen by request id, so the
same rows every time) becomes the test set: the newest data is what a retrained model must win
on, while the gates' no-forgetting check keeps it honest on every earlier test set. The rest
joins the training data, weighted, with the replay.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from common import CATEGORICAL, FEATURES, NUMERIC, TARGET, params, write_json
from sklearn.model_selection import train_test_split


def production(p: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled production rows split into (train, test); both empty while too few."""
    fresh = pd.read_parquet("data/labelled.parquet")
    replay = pd.read_parquet("data/replay.parquet")
    columns = [*FEATURES, TARGET]
    empty = pd.DataFrame(columns=columns)
    if len(fresh) < p["featurize"]["production_min_rows"]:
        return (replay[columns] if len(replay) else empty), empty
    share = p["featurize"]["production_test_share"]
    key = pd.util.hash_pandas_object(fresh["request_id"].astype(str), index=False)
    held_out = (key % 1000) < share * 1000
    train = pd.concat([fresh.loc[~held_out, columns], replay[columns] if len(replay) else empty])
    return train, fresh.loc[held_out, columns]


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
    prod_train, prod_test = production(p)
    weights = [1.0] * len(train) + [float(p["featurize"]["production_weight"])] * len(prod_train)
    if len(prod_train):
        train = pd.concat([train, prod_train.astype(train.dtypes.to_dict())], ignore_index=True)
    if len(prod_test):
        test = prod_test.astype(test.dtypes.to_dict())
    out = Path("data/features")
    out.mkdir(parents=True, exist_ok=True)
    train.to_parquet(out / "train.parquet", index=False)
    test.to_parquet(out / "test.parquet", index=False)
    pd.DataFrame({"weight": weights}).to_parquet(out / "weights.parquet", index=False)
    write_json(
        str(out / "schema.json"),
        {
            "target": TARGET,
            "numeric": NUMERIC,
            "categorical": CATEGORICAL,
            "rows": {"train": len(train), "test": len(test)},
            "production": {"train": len(prod_train), "test": len(prod_test)},
        },
    )
    source = "production's newest labelled rows" if len(prod_test) else "the warehouse export"
    print(
        f"train {len(train)} rows ({len(prod_train)} from production), "
        f"test {len(test)} rows from {source}"
    )


if __name__ == "__main__":
    main()
