"""``mlcd data import`` / ``update``: data from outside the project, tracked with its source.

A SQLite table (with a freshness query) and a folder behind a ``file://`` URL, through the real
CLI: the pointer names the source (never a password), ``mlcd data status`` and ``mlcd status``
say when the source moved upstream without downloading it, ``mlcd data update`` re-tracks only
what changed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd

from tests.pipeline.conftest import Cli

QUERY = "select id, value from items order by id"
FRESH = "select max(updated) from items"


def _db(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("create table items (id integer primary key, value real, updated integer)")
        conn.executemany("insert into items values (?, ?, 1)", [(i, i * 1.5) for i in range(50)])


def _status(mlcd: Cli, root: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    result = mlcd(root, "data", "status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["path"]: row for row in json.loads(result.stdout)["data"]}


def test_a_table_is_imported_tracked_and_updated_when_it_moves(
    make_project: Cli, mlcd: Cli, tmp_path: Path
) -> None:
    db = tmp_path / "shop.db"
    _db(db)
    root = make_project("stages: {}\n")
    url = f"sqlite:///{db}"
    imported = mlcd(
        root, "data", "import", url, "data/items.parquet", "--query", QUERY,
        "--freshness", FRESH, "--json",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    document = json.loads(imported.stdout)
    assert document["source"]["kind"] == "sql" and document["source"]["query"] == QUERY
    pointer = (root / "data" / "items.parquet.mlcd").read_text()
    assert f"source_url: {url}" in pointer and f"source_query: {QUERY}" in pointer
    assert len(pd.read_parquet(root / "data" / "items.parquet")) == 50
    assert _status(mlcd, root)["data/items.parquet"]["upstream"] == "unchanged"

    with sqlite3.connect(db) as conn:
        conn.execute("update items set value = -1, updated = 2 where id = 3")
    assert _status(mlcd, root)["data/items.parquet"]["upstream"] == "changed"
    status = mlcd(root, "status")
    assert "data/items.parquet: its source changed upstream" in status.stdout
    assert mlcd(root, "status", "--check").returncode == 1

    updated = mlcd(root, "data", "update", "--json")
    assert updated.returncode == 0, updated.stderr
    [row] = json.loads(updated.stdout)
    assert row["changed"] is True and row["digest"] != document["digest"]
    assert pd.read_parquet(root / "data" / "items.parquet")["value"][3] == -1
    assert _status(mlcd, root)["data/items.parquet"]["upstream"] == "unchanged"
    again = json.loads(mlcd(root, "data", "update", "data/items.parquet", "--json").stdout)
    assert again[0]["changed"] is False


def test_a_folder_behind_a_url_is_imported_and_updated(
    make_project: Cli, mlcd: Cli, tmp_path: Path
) -> None:
    remote = tmp_path / "remote" / "events"
    remote.mkdir(parents=True)
    (remote / "a.csv").write_text("x\n1\n")
    root = make_project("stages: {}\n")
    url = remote.as_uri() + "/"
    first = mlcd(root, "data", "import", url, "data/events", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["files"] == 1
    assert _status(mlcd, root)["data/events"]["upstream"] == "unchanged"
    (remote / "b.csv").write_text("x\n2\n")
    assert _status(mlcd, root)["data/events"]["upstream"] == "changed"
    second = json.loads(mlcd(root, "data", "update", "--json").stdout)
    assert second[0]["changed"] is True and second[0]["files"] == 2
    assert sorted(p.name for p in (root / "data" / "events").iterdir()) == ["a.csv", "b.csv"]


def test_bad_imports_say_why_and_write_nothing(
    make_project: Cli, mlcd: Cli, tmp_path: Path
) -> None:
    root = make_project("stages: {}\n")
    password = mlcd(
        root, "data", "import", "postgresql://me:hunter2secret@db/shop", "x.parquet",
        "--query", "select 1",
    )  # fmt: skip
    assert password.returncode == 2 and "holds a password" in password.stderr
    assert "hunter2secret" not in password.stderr + password.stdout
    no_query = mlcd(root, "data", "import", "sqlite:///shop.db", "x.parquet")
    assert no_query.returncode == 2 and "needs --query" in no_query.stderr
    not_imported = mlcd(root, "data", "update", "x.parquet")
    assert not_imported.returncode == 2 and "not imported data" in not_imported.stderr
    assert not (root / "x.parquet.mlcd").exists() and not (root / "x.parquet").exists()
