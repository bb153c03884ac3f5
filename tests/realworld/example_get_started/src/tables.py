"""Not upstream: added by the mlcd port. The feature matrices as tables mlcd reads.

``featurization.py`` pickles ``(matrix, feature_names)`` where the matrix holds the post id,
the label and the TF-IDF features. ``mlcd evaluate``, the model's signature sample and the
monitoring reference want tables with named columns (the features under their names, the label
as ``label``), so this writes:

* ``train.csv``: the training rows;
* ``sample.csv``: 500 training rows without the label, the sample the signature is taken from;
* ``valid.csv`` and ``test.csv``: the upstream test split cut in two halves. ``valid.csv`` is
  the monitoring reference: held-out rows, so the reference's predictions are the model's
  predictions on data it never saw, as live traffic's are (on its own training rows a forest
  is far more confident). ``test.csv`` is what ``mlcd evaluate`` scores.
"""

import os
import pickle
import sys

import pandas as pd


def table(path):
    """The features and the label of one pickled split."""
    with open(path, "rb") as fd:
        matrix, names = pickle.load(fd)
    frame = pd.DataFrame(matrix[:, 2:].toarray(), columns=list(names))
    frame["label"] = matrix[:, 1].toarray().ravel().astype(int)
    return frame


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: python src/tables.py features-dir tables-dir\n")
        sys.exit(1)
    features, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    train = table(os.path.join(features, "train.pkl"))
    train.to_csv(os.path.join(out, "train.csv"), index=False)
    train.drop(columns=["label"]).head(500).to_csv(os.path.join(out, "sample.csv"), index=False)
    test = table(os.path.join(features, "test.pkl"))  # rows in prepare.py's random order
    half = len(test) // 2
    test.iloc[:half].to_csv(os.path.join(out, "valid.csv"), index=False)
    test.iloc[half:].to_csv(os.path.join(out, "test.csv"), index=False)


if __name__ == "__main__":
    main()
