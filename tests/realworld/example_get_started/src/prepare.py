"""Stage ``prepare``: StackOverflow posts (``<row .../>`` lines) to train and test tables.

Each post becomes ``id``, ``label`` (1 when it is tagged ``<r>``) and ``text`` (title and body,
HTML stripped); posts are split at random by ``prepare.split`` and ``prepare.seed``.
"""

import csv
import html
import os
import random
import re
import sys
import xml.etree.ElementTree as ET

import yaml

TAG = re.compile(r"<[^>]+>")


def read_posts(path):
    """Yield ``(id, label, text)`` for every ``<row .../>`` line of the dump."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if not line.startswith("<row"):
                continue
            attrs = ET.fromstring(line).attrib
            text = " ".join((attrs.get("Title", ""), TAG.sub(" ", attrs.get("Body", ""))))
            text = " ".join(html.unescape(text).split())
            yield int(attrs["Id"]), int("<r>" in attrs.get("Tags", "")), text


def write(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as out:
        table = csv.writer(out, delimiter="\t")
        table.writerow(["id", "label", "text"])
        table.writerows(rows)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python src/prepare.py data.xml")
    with open("params.yaml") as f:
        params = yaml.safe_load(f)["prepare"]
    rng = random.Random(params["seed"])
    train, test = [], []
    for row in read_posts(sys.argv[1]):
        (test if rng.random() < params["split"] else train).append(row)
    os.makedirs("data/prepared", exist_ok=True)
    write("data/prepared/train.tsv", train)
    write("data/prepared/test.tsv", test)


if __name__ == "__main__":
    main()
