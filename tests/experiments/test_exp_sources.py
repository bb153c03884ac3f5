"""An experiment whose stage reads a SQL source by a relative ``sqlite:///`` URL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.experiments.conftest import exp_json, git, tree
from tests.pipeline.conftest import Cli

CONFIG = """
stages:
  load:
    cmd: python load.py
    sources:
      - path: data/rows.parquet
        sql: {url: "sqlite:///warehouse/shop.db", query: "select id, amount from orders"}
    deps: [load.py, data/rows.parquet]
    params: [load.scale]
    outs: [total.txt]
"""
FILES = {
    "params.yaml": "load:\n  scale: 1\n",
    "load.py": """
import pandas as pd, yaml
scale = yaml.safe_load(open("params.yaml"))["load"]["scale"]
total = pd.read_parquet("data/rows.parquet")["amount"].sum() * scale
open("total.txt", "w").write(f"{total}\\n")
""",
    # the warehouse is local and git-ignored, like the churn example's
    ".gitignore": "/.mlcd/\n/warehouse/\n",
}


def test_an_experiment_reads_a_relative_sqlite_source_of_the_project(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    root = make_project(CONFIG, FILES)
    (root / "warehouse").mkdir()
    with sqlite3.connect(root / "warehouse" / "shop.db") as db:
        db.execute("create table orders (id integer, amount real)")
        db.executemany("insert into orders values (?, ?)", [(1, 2.5), (2, 4.0)])
    git(root, "init", "-q", "-b", "main")
    assert mlcd(root, "run", "--json").returncode == 0
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")
    before = tree(root)

    done = exp_json(mlcd, root, tmp_path, "run", "-S", "load.scale=10")

    assert done["ok"], done
    assert tree(root) == before  # the work tree (and the warehouse) untouched
    applied = mlcd(root, "exp", "apply", done["name"])
    assert applied.returncode == 0, applied.stderr
    assert (root / "total.txt").read_text() == "65.0\n"
