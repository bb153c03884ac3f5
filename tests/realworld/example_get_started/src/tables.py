"""Not upstream: added by the mlcd port. The feature matrices as tables mlcd reads.

``featurization.py`` pickles ``(matrix, feature_names)`` where the matrix holds the post id,
the label and the TF-IDF features. ``mlcd evaluate``, the model's signature sample and the
monitoring reference want a table with named columns, so this writes one CSV per split:
the features under their names, and the label as ``label``; and ``sample.csv``, 500
training rows without the label: the input sample the model's signature is taken from.
"""

import os
import pickle
import sys

import pandas as pd


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: python src/tables.py features-dir tables-dir\n")
        sys.exit(1)
    features, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for split in ("train", "test"):
        with open(os.path.join(features, f"{split}.pkl"), "rb") as fd:
            matrix, names = pickle.load(fd)
        frame = pd.DataFrame(matrix[:, 2:].toarray(), columns=list(names))
        frame["label"] = matrix[:, 1].toarray().ravel().astype(int)
        frame.to_csv(os.path.join(out, f"{split}.csv"), index=False)
        if split == "train":
            sample = frame.drop(columns=["label"]).head(500)
            sample.to_csv(os.path.join(out, "sample.csv"), index=False)


if __name__ == "__main__":
    main()
