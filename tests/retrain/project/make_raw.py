"""Write raw.csv: two informative features and a binary label (seed and size from argv)."""

import sys

import numpy as np
import pandas as pd

seed, rows = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(seed)
a, b = rng.normal(size=rows), rng.normal(size=rows)
y = ((a + 0.5 * b + rng.normal(scale=0.5, size=rows)) > 0).astype(int)
pd.DataFrame({"a": a, "b": b, "y": y}).to_csv("raw.csv", index=False)
