"""Split raw.csv into train and test halves."""

import os

import pandas as pd

raw = pd.read_csv("raw.csv")
os.makedirs("data", exist_ok=True)
raw.iloc[: len(raw) // 2].to_csv("data/train.csv", index=False)
raw.iloc[len(raw) // 2 :].to_csv("data/test.csv", index=False)
