"""The stdlib-sqlite3 fast path (``mlcd.store.lite``) against the SQLAlchemy repositories: the
generated SQL is current, both write identical rows, both read the same newest runs, and a
database the fast path must not touch (new, unmigrated, newer, read-only) goes to ``Store``."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from mlcd.errors import StoreError
from mlcd.store import HEAD, Store, lite, lite_gen, lite_sql
from mlcd.store import runs as repo
from mlcd.store.records import ArtifactRef
from mlcd.tracking.query import search
from mlcd.tracking.records import newest_runs
from mlcd.tracking.session import open_store

TABLES = ("runs", "run_params", "run_tags", "run_metrics", "run_latest_metrics", "run_artifacts")
#: Columns whose value is the clock at write time: compared as "set or not".
CLOCK = {"started_at", "ended_at", "heartbeat_at"}


def test_generated_sql_is_current() -> None:
    """``lite_sql`` is what ``lite_gen`` makes of today's tables (regenerate it if not:
    ``python -m mlcd.store.lite_gen > src/mlcd/store/lite_sql.py``)."""
    assert Path(lite_sql.__file__).read_text(encoding="utf-8") == lite_gen.render()
    assert lite_sql.HEAD == HEAD


def _migrated(path: Path) -> Path:
    Store(f"sqlite:///{path}").dispose()
    return path


def _history(conn: Any, module: Any) -> None:
    """The same writes, through either repository."""
    module.create_run(
        conn, name="a", kind="manual", git_commit="abc", git_dirty=True, user="u", run_id="r" * 32
    )
    module.create_run(conn, run_id="p" * 32, git_dirty=None, started_at=5.0)
    module.set_tags(conn, "r" * 32, {"mlcd.branch": "main", "empty": None, "n": 3})
    module.set_tags(conn, "r" * 32, {"mlcd.branch": "dev"})
    module.log_params(
        conn, "r" * 32, {"lr": 0.1, "depth": 3, "name": "gbm", "none": None, "flag": True}
    )
    module.log_params(conn, "r" * 32, {"lr": "1e-3", "nan": "nan", "big": 10**400})
    module.log_metric_rows(
        conn,
        "r" * 32,
        [("loss", 0.5, 0, 1.0), ("loss", 0.4, 2, 2.0), ("loss", 0.45, 1, 3.0), ("acc", 1, 0, 1.0)],
    )
    module.log_metric_rows(conn, "r" * 32, [("loss", 0.3, 2, 2.5), ("loss", 9.0, 1, 9.0)])
    module.log_metric_rows(conn, "p" * 32, [("acc", 0.25, 7, 4.0)])
    module.add_artifacts(
        conn,
        "r" * 32,
        [ArtifactRef("artifact", "model", "d" * 64, 10), ArtifactRef("output", "o", "e" * 64)],
    )
    module.end_run(conn, "r" * 32, "failed")


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        found = {}
        for table in TABLES:
            names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            typed = ", ".join(f'"{n}", typeof("{n}")' for n in names)
            rows = conn.execute(f"SELECT {typed} FROM {table} ORDER BY 1, 2, 3, 4").fetchall()
            found[table] = [
                tuple(
                    (row[i] is not None) if names[i // 2] in CLOCK and i % 2 == 0 else row[i]
                    for i in range(len(row))
                )
                for row in rows
            ]
        return found
    finally:
        conn.close()


def test_both_paths_write_identical_rows(tmp_path: Path) -> None:
    slow_path, fast_path = _migrated(tmp_path / "slow.db"), _migrated(tmp_path / "fast.db")
    slow = Store(f"sqlite:///{slow_path}")
    slow.transact(lambda conn: _history(conn, repo))
    slow.dispose()
    fast = lite.open_fast(f"sqlite:///{fast_path}")
    assert fast is not None
    fast.transact(lambda conn: _history(conn, lite))
    fast.dispose()
    expected = _rows(slow_path)
    assert expected["run_metrics"] and expected["run_params"]  # the comparison compares rows
    assert _rows(fast_path) == expected


def test_newest_runs_read_like_search(tmp_path: Path) -> None:
    path = _migrated(tmp_path / "proj" / ".mlcd" / "mlcd.db")
    (tmp_path / "proj" / "mlcd.yaml").write_text("{}\n", encoding="utf-8")
    store = Store(f"sqlite:///{path}")

    def fill(conn: Any) -> None:
        _history(conn, repo)
        for i in range(30):  # ties on started_at are ordered by id
            run_id = f"{i % 7:02d}{i:030d}"
            repo.create_run(conn, run_id=run_id, started_at=100.0 + i // 3, git_dirty=i % 2 == 0)
            repo.log_metric_rows(conn, run_id, [("m", float(i), 0, 1.0)])
            repo.log_params(conn, run_id, {"i": i})

    store.transact(fill)
    for limit in (1, 5, 32, 100):
        with store.read() as conn:
            expected = search(conn, None, None, limit)
        assert newest_runs(limit, tmp_path / "proj") == expected
    store.dispose()


def test_fast_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    path = _migrated(tmp_path / "a.db")
    fast = lite.open_fast(f"sqlite:///{path}")
    assert fast is not None

    def half(conn: Any) -> None:
        lite.create_run(conn, run_id="x" * 32)
        lite.log_metric_rows(conn, "missing-run", [("m", 1.0, 0, 1.0)])  # foreign key

    with pytest.raises(StoreError, match="FOREIGN KEY"):
        fast.transact(half)
    with fast.read() as conn:
        assert not lite.run_exists(conn, "x" * 32)
    fast.dispose()


def _at_revision(path: Path, revision: str) -> Path:
    _migrated(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.commit()
    conn.close()
    return path


def test_fast_path_leaves_other_databases_to_store(tmp_path: Path) -> None:
    # no file yet: Store creates and migrates it
    assert lite.open_fast(f"sqlite:///{tmp_path / 'new.db'}") is None
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}", tmp_path)
    assert isinstance(store, Store) and store.current_revision() == HEAD
    store.dispose()
    assert isinstance(open_store(f"sqlite:///{tmp_path / 'new.db'}", tmp_path), lite.LiteStore)
    # an older schema: migrated by Store, then fast
    old = _at_revision(tmp_path / "old.db", "0007")
    assert lite.open_fast(f"sqlite:///{old}") is None
    # a newer schema than this mlcd knows: refused by Store, with its error, on both paths
    newer = _at_revision(tmp_path / "newer.db", "9999")
    assert lite.open_fast(f"sqlite:///{newer}") is None
    with pytest.raises(Exception) as direct:
        Store(f"sqlite:///{newer}")
    with pytest.raises(Exception) as through:
        open_store(f"sqlite:///{newer}", tmp_path)
    assert type(through.value) is type(direct.value)
    assert str(through.value) == str(direct.value)
    # not SQLite, or disabled
    assert lite.open_fast("postgresql://nobody@127.0.0.1:1/none") is None
    os.environ[lite.DISABLE_ENV] = "1"
    try:
        assert lite.open_fast(f"sqlite:///{tmp_path / 'new.db'}") is None
    finally:
        del os.environ[lite.DISABLE_ENV]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_read_only_database_goes_to_store(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    path = _migrated(folder / "mlcd.db")
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert lite.open_fast(f"sqlite:///{path}") is None
        store = open_store(f"sqlite:///{path}", tmp_path)
        assert isinstance(store, Store) and store.read_only
        store.dispose()
    finally:
        folder.chmod(stat.S_IRWXU)


def _queue_rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        names = [row[1] for row in conn.execute("PRAGMA table_info(exp_queue)")]
        typed = ", ".join(
            f'"{n}" IS NOT NULL' if n == "created_at" else f'"{n}", typeof("{n}")' for n in names
        )
        return conn.execute(f"SELECT {typed} FROM exp_queue ORDER BY id").fetchall()
    finally:
        conn.close()


def test_both_paths_enqueue_identical_rows(tmp_path: Path) -> None:
    from mlcd.store import queue

    def work(conn: Any) -> list[bool]:
        module = lite.queue_repository(conn)
        module.enqueue(conn, name="a", settings=["lr=0.1", "p.yaml:k=ü"], entry_id="1" * 32)
        module.enqueue(
            conn,
            name="b",
            settings=(),
            kind="trial",
            base="HEAD",
            options={"executor": "local", "jobs": 2, "x": None},
            sweep_id="s" * 32,
            trial=3,
            entry_id="2" * 32,
        )
        return [module.name_queued(conn, "a"), module.name_queued(conn, "zzz")]

    slow_path, fast_path = _migrated(tmp_path / "slow.db"), _migrated(tmp_path / "fast.db")
    slow = Store(f"sqlite:///{slow_path}")
    assert slow.transact(work) == [True, False]
    with slow.read() as conn:
        assert lite.queue_repository(conn) is queue
    slow.dispose()
    fast = lite.open_fast(f"sqlite:///{fast_path}")
    assert fast is not None
    assert fast.transact(work) == [True, False]
    fast.dispose()
    assert _queue_rows(fast_path) == _queue_rows(slow_path)
    assert len(_queue_rows(slow_path)) == 2
