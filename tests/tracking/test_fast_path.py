"""``import mlcd; start_run(); log_metric()`` in a new process on the embedded SQLite store: no
SQLAlchemy, no pydantic once ``mlcd.yaml`` was validated, the same rows as the SQLAlchemy path,
and every change of ``mlcd.yaml`` validated again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.tracking.conftest import clean_env, run_script

SCRIPT = """
import sys, mlcd
with mlcd.start_run(name="r", tags={"t": "v"}) as run:
    mlcd.log_param("lr", 0.1)
    mlcd.log_params({"depth": 3, "model": "gbm"})
    mlcd.set_tag("stage", None)
    mlcd.log_metric("loss", 0.5)
    mlcd.log_metric("loss", 0.25, step=4)
    mlcd.log_metrics({"acc": 0.75, "f1": 1})
print(run.id)
print(json.dumps(sorted(m for m in ("sqlalchemy", "pydantic", "typer", "rich") if m in sys.modules)))
""".replace("import sys, mlcd", "import json, sys, mlcd")


def _init(root: Path) -> None:
    (root / "mlcd.yaml").write_text("{}\n", encoding="utf-8")
    (root / ".mlcd").mkdir()


def _run(root: Path, **env: str) -> tuple[str, list[str]]:
    result = run_script(SCRIPT, cwd=root, env=clean_env(**env))
    assert result.returncode == 0, result.stderr
    run_id, modules = result.stdout.strip().splitlines()
    return run_id, json.loads(modules)


def _rows(root: Path, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(root / ".mlcd" / "mlcd.db")
    try:
        return {
            "run": conn.execute(
                "SELECT name, kind, status, parent_id, git_commit, git_dirty, user, "
                "ended_at IS NOT NULL, heartbeat_at IS NOT NULL FROM runs WHERE id = ?",
                (run_id,),
            ).fetchall(),
            **{
                table: conn.execute(
                    f"SELECT {columns} FROM {table} WHERE run_id = ? ORDER BY key, {order}",
                    (run_id,),
                ).fetchall()
                for table, columns, order in (
                    ("run_params", "key, value, value_num, typeof(value_num)", "value"),
                    ("run_tags", "key, value", "value"),
                    ("run_metrics", "key, value, step, typeof(value)", "step"),
                    ("run_latest_metrics", "key, value, step", "step"),
                )
            },
        }
    finally:
        conn.close()


def test_first_metric_without_sqlalchemy_writes_the_same_rows(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    # first process: creates and migrates the database, validates mlcd.yaml in full
    first, modules = _run(root)
    assert "sqlalchemy" in modules and "pydantic" in modules
    fast, modules = _run(root)
    assert modules == []  # neither SQLAlchemy, pydantic, typer nor rich
    slow, _ = _run(root, MLCD_NO_FAST_STORE="1")
    assert _rows(root, fast) == _rows(root, slow) == _rows(root, first)
    assert _rows(root, fast)["run_metrics"]


def test_changed_config_is_validated_again(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    _run(root)
    assert (root / ".mlcd" / "config.validated.json").is_file()
    (root / "mlcd.yaml").write_text("stores: oops\n", encoding="utf-8")
    result = run_script(SCRIPT, cwd=root, env=clean_env())
    assert result.returncode != 0
    assert "stores" in result.stderr
    # a record that does not match the file's bytes is ignored, never trusted
    (root / "mlcd.yaml").write_text("{}\n", encoding="utf-8")
    record = root / ".mlcd" / "config.validated.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    data["settings"]["store"] = "sqlite:///elsewhere.db"
    data["sha256"] = "0" * 64
    record.write_text(json.dumps(data), encoding="utf-8")
    run_id, _ = _run(root)
    assert _rows(root, run_id)["run"]
    assert not (root / "elsewhere.db").exists()


def test_store_override_applies_on_the_fast_path(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _init(root)
    _run(root)  # the validated record
    other = tmp_path / "other.db"
    _run(root, MLCD_STORE=f"sqlite:///{other}")  # created and migrated by Store
    run_id, modules = _run(root, MLCD_STORE=f"sqlite:///{other}")
    assert "sqlalchemy" not in modules
    conn = sqlite3.connect(other)
    assert conn.execute("SELECT count(*) FROM runs WHERE id = ?", (run_id,)).fetchone() == (1,)
    conn.close()


def test_secret_config_is_not_recorded(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / ".mlcd").mkdir()
    (root / "mlcd.yaml").write_text(
        "remotes:\n  s3:\n    url: s3://bucket/x\n    options:\n      secret_key: hunter2hunter2\n",
        encoding="utf-8",
    )
    _run(root)
    assert not (root / ".mlcd" / "config.validated.json").exists()
