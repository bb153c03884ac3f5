"""Fit a logistic regression; train.noise flips that share of training labels."""

import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression

import mlcd

with open("params.yaml") as handle:
    noise = float(yaml.safe_load(handle)["train"]["noise"])
frame = pd.read_csv("data/train.csv")
X, y = frame.drop(columns=["y"]), frame["y"].to_numpy()
flip = np.random.default_rng(0).random(len(y)) < noise
y = np.where(flip, 1 - y, y)
model = LogisticRegression(max_iter=1000).fit(X, y)
mlcd.save_model(model, "model", sample_input=X)
