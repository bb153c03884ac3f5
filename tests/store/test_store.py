"""The metadata store on SQLite and PostgreSQL: migrations, repositories, concurrency."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from mlcd.errors import NotFound, StoreError
from mlcd.store import HEAD, Store, events, locks, runs, state
from mlcd.store import cache as run_cache
from mlcd.store import tables as t


def test_new_store_is_migrated_to_head(store_url: str, open_store) -> None:
    store = open_store(store_url)
    assert store.current_revision() == HEAD
    names = set(inspect(store.engine).get_table_names())
    assert set(t.metadata.tables) <= names


def test_migrations_match_table_definitions(store_url: str, open_store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = open_store(store_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_run_roundtrip_with_params_metrics_tags_artifacts(store_url: str, open_store) -> None:
    store = open_store(store_url)
    with store.write() as conn:
        run_id = runs.create_run(conn, name="baseline", git_commit="abc", git_dirty=False)
        runs.log_params(conn, run_id, {"lr": 0.1, "model": "gbm"})
        runs.set_tags(conn, run_id, {"branch": "main"})
        runs.log_metrics(
            conn,
            run_id,
            [
                runs.MetricPoint("loss", 0.9, 0),
                runs.MetricPoint("loss", 0.5, 2),
                runs.MetricPoint("loss", 0.7, 1),
            ],
        )
        runs.add_artifacts(
            conn, run_id, [runs.ArtifactRef("output", "model.bin", "ab" * 32, 10, "train")]
        )
        runs.end_run(conn, run_id)
    with store.read() as conn:
        assert runs.get_run(conn, run_id[:8])["status"] == "finished"
        assert runs.params_of(conn, run_id) == {"lr": "0.1", "model": "gbm"}
        assert runs.tags_of(conn, run_id) == {"branch": "main"}
        assert runs.latest_metrics_of(conn, run_id) == {"loss": 0.5}
        assert [p.step for p in runs.metric_history(conn, run_id, "loss")] == [0, 1, 2]
        assert runs.runs_producing(conn, "ab" * 32)[0]["id"] == run_id


def test_unknown_run_is_not_found_with_hint(store_url: str, open_store) -> None:
    store = open_store(store_url)
    with store.read() as conn, pytest.raises(NotFound, match="mlcd runs list"):
        runs.get_run(conn, "deadbeef")


def test_run_cache_first_entry_wins(store_url: str, open_store) -> None:
    store = open_store(store_url)
    with store.write() as conn:
        run_cache.put_entry(conn, "f1", "train", {"model.bin": "aa" * 32})
        run_cache.put_entry(conn, "f1", "train", {"model.bin": "bb" * 32})
    with store.read() as conn:
        assert run_cache.get_entry(conn, "f1")["outputs"] == {"model.bin": "aa" * 32}
        assert run_cache.get_entry(conn, "nope") is None


def test_events_and_state_and_leases(store_url: str, open_store) -> None:
    store = open_store(store_url)
    with store.write() as conn:
        events.record(
            conn, "alias.moved", model="churn", version=2, alias="champion", reason="better"
        )
        state.put(conn, "tick", {"at": 1})
        assert locks.acquire(conn, "retrain:churn", "a", ttl_s=60)
        assert not locks.acquire(conn, "retrain:churn", "b", ttl_s=60)
        assert locks.acquire(conn, "expired", "a", ttl_s=-1)
        assert locks.acquire(conn, "expired", "b", ttl_s=60)  # the crashed holder's lease lapsed
    with store.read() as conn:
        (event,) = events.query(conn, model="churn")
        assert event["alias"] == "champion" and event["actor"]
        assert state.get(conn, "tick") == {"at": 1}


def test_bad_sqlite_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((StoreError, OSError)):
        Store(f"sqlite:///{blocker}/sub/mlcd.db")


def test_unreachable_postgres_says_what_to_check() -> None:
    with pytest.raises(StoreError, match="PostgreSQL is running"):
        Store("postgresql://nobody@127.0.0.1:1/none")


# ---------------------------------------------------------------- many processes at once
def _writer(url: str, worker: int, count: int) -> None:
    store = Store(url)
    for i in range(count):

        def work(conn, i=i):  # type: ignore[no-untyped-def]
            run_id = runs.create_run(conn, name=f"w{worker}-{i}")
            runs.log_params(conn, run_id, {"worker": worker, "i": i})

        store.transact(work)
    store.dispose()


def _concurrent_writers(url: str, workers: int = 16, count: int = 300) -> None:
    """16 new processes that race to migrate the store, then interleave ``count`` one-run
    transactions each (300 keep all 16 writing at once for the whole run on this machine).

    They are forked from multiprocessing's fork server with SQLAlchemy and mlcd's store
    imported ahead (nothing of the store is opened before the fork): each is a fresh process
    that opens the store on its own, without paying the imports 16 times."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["sqlalchemy", "mlcd.store", __name__])
    procs = [ctx.Process(target=_writer, args=(url, w, count)) for w in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=600)
    assert [p.exitcode for p in procs] == [0] * workers


@pytest.mark.slow
def test_sixteen_processes_write_to_a_new_sqlite_store(tmp_path: Path, open_store) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'mlcd.db'}"  # not created yet: all 16 race to migrate
    _concurrent_writers(url)
    store = open_store(url)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.runs)).scalar() == 16 * 300
        assert conn.execute(select(func.count()).select_from(t.run_params)).scalar() == 32 * 300


@pytest.mark.slow
@pytest.mark.postgres
def test_sixteen_processes_write_to_a_new_postgres_store(pg_url: str, open_store) -> None:
    _concurrent_writers(pg_url)
    store = open_store(pg_url)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.runs)).scalar() == 16 * 300
    store.dispose()
