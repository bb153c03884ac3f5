"""Stage ``train``: a random forest on the TF-IDF columns, pickled (as the public project does)."""

import os
import pickle
import sys

import yaml
from sklearn.ensemble import RandomForestClassifier


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python src/train.py features-dir model.pkl")
    with open("params.yaml") as f:
        params = yaml.safe_load(f)["train"]
    with open(os.path.join(sys.argv[1], "train.pkl"), "rb") as f:
        matrix, _names = pickle.load(f)
    labels = matrix[:, 1].toarray().ravel().astype(int)
    forest = RandomForestClassifier(
        n_estimators=params["n_est"],
        min_samples_split=params["min_split"],
        random_state=params["seed"],
        n_jobs=1,
    )
    forest.fit(matrix[:, 2:], labels)  # a sparse matrix: the model knows no feature names
    with open(sys.argv[2], "wb") as f:
        pickle.dump(forest, f)


if __name__ == "__main__":
    main()
