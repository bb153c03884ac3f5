"""Stage ``featurize``: post texts to TF-IDF matrices over the most frequent words and n-grams.

Writes ``train.pkl`` and ``test.pkl`` into the output folder, each ``(matrix, names)``: a sparse
matrix whose columns are the post id, the label, then one TF-IDF column per term in ``names``
(``featurize.max_features`` terms, n-grams up to ``featurize.ngrams`` words).
"""

import csv
import os
import pickle
import sys

import numpy as np
import scipy.sparse as sp
import yaml
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    ids = np.array([[int(r["id"]), int(r["label"])] for r in rows], dtype=float)
    return ids, [r["text"] for r in rows]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python src/featurization.py prepared-dir features-dir")
    source, out = sys.argv[1], sys.argv[2]
    with open("params.yaml") as f:
        params = yaml.safe_load(f)["featurize"]
    counts = CountVectorizer(
        max_features=params["max_features"], ngram_range=(1, params["ngrams"])
    )
    tfidf = TfidfTransformer(smooth_idf=False)
    os.makedirs(out, exist_ok=True)
    for split, fit in (("train", True), ("test", False)):
        ids, texts = read(os.path.join(source, f"{split}.tsv"))
        words = counts.fit_transform(texts) if fit else counts.transform(texts)
        weights = tfidf.fit_transform(words) if fit else tfidf.transform(words)
        matrix = sp.hstack([sp.csr_matrix(ids), weights], format="csr")
        names = [str(n) for n in counts.get_feature_names_out()]
        with open(os.path.join(out, f"{split}.pkl"), "wb") as f:
            pickle.dump((matrix, names), f)


if __name__ == "__main__":
    main()
