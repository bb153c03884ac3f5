"""The logging API across processes: stage environment, exit flush, SIGKILL, fork, many writers."""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlcd.store import Store, runs
from tests.conftest import run_python
from tests.tracking.conftest import clean_env, run_script


def _pipeline_run(store: Store) -> str:
    """A run as ``mlcd run`` creates it, for stage processes to attach to."""
    with store.write() as conn:
        return runs.create_run(conn, kind="pipeline")


def _stage_env(root: Path, store: Store, run_id: str, stage: str = "train", **extra: str) -> dict:
    return clean_env(
        MLCD_RUN_ID=run_id,
        MLCD_STAGE=stage,
        MLCD_PROJECT=str(root),
        MLCD_STORE=store.url,
        MLCD_ARTIFACTS=str(root / ".mlcd" / "objects"),
        **extra,
    )


def test_stage_process_logs_through_its_environment_and_exit_flushes(
    tracked_project: Path, project_store
) -> None:
    store = project_store(tracked_project)
    run_id = _pipeline_run(store)
    (tracked_project / "model.bin").write_bytes(b"model")
    result = run_script(
        """
        import mlcd
        for step in range(5000):
            mlcd.log_metric("loss", 1.0 / (step + 1))
        mlcd.log_param("lr", 0.1)
        mlcd.set_tag("device", "cpu")
        mlcd.log_artifact("model.bin")
        print(mlcd.active_run().id)
        """,  # no flush, no end: the exit hook writes everything
        cwd=tracked_project,
        env=_stage_env(tracked_project, store, run_id),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == run_id
    with store.read() as conn:
        assert len(runs.metric_history(conn, run_id, "loss")) == 5000
        assert runs.latest_metrics_of(conn, run_id) == {"loss": 1.0 / 5000}
        assert runs.params_of(conn, run_id) == {"lr": "0.1"}
        assert runs.tags_of(conn, run_id) == {"device": "cpu"}
        [artifact] = runs.artifacts_of(conn, run_id)
        assert (artifact.role, artifact.path, artifact.stage) == ("artifact", "model.bin", "train")
        assert runs.get_run(conn, run_id)["status"] == "running"  # the pipeline ends its run


def test_sigkill_loses_at_most_what_was_logged_since_the_last_flush(
    sqlite_project: Path, project_store
) -> None:
    store = project_store(sqlite_project)
    run_id = _pipeline_run(store)
    result = run_script(
        """
        import os, signal
        import mlcd
        for step in range(1000):
            mlcd.log_metric("loss", 1.0, step=step)
        mlcd.flush()
        for step in range(1000, 2000):
            mlcd.log_metric("loss", 1.0, step=step)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        cwd=sqlite_project,
        env=_stage_env(sqlite_project, store, run_id, MLCD_FLUSH_INTERVAL="30"),
    )
    assert result.returncode == -9
    with store.read() as conn:
        steps = [p.step for p in runs.metric_history(conn, run_id, "loss")]
    assert steps[:1000] == list(range(1000))  # everything flushed survived
    assert len(steps) < 2000  # the unflushed tail was lost (a long interval kept it buffered)


def test_unknown_run_in_the_environment_is_reported_with_a_fix(
    sqlite_project: Path, project_store
) -> None:
    store = project_store(sqlite_project)
    result = run_script(
        """
        import mlcd
        mlcd.log_metric("loss", 1.0)
        mlcd.flush()
        """,
        cwd=sqlite_project,
        env=_stage_env(sqlite_project, store, "0" * 32),
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "mlcd run" in result.stderr


def test_exit_hook_reports_records_it_could_not_write(sqlite_project: Path, project_store) -> None:
    store = project_store(sqlite_project)
    result = run_script(
        """
        import mlcd
        mlcd.log_metric("loss", 1.0)
        """,
        cwd=sqlite_project,
        env=_stage_env(sqlite_project, store, "f" * 32),
    )
    assert "mlcd:" in result.stderr and "does not exist" in result.stderr


def test_forked_worker_logs_to_the_parent_run(sqlite_project: Path, project_store) -> None:
    result = run_script(
        """
        import multiprocessing as mp
        import mlcd

        def work(worker):
            for step in range(200):
                mlcd.log_metric(f"worker{worker}", float(step))
            # no flush: the worker's exit finalizer writes the buffer

        if __name__ == "__main__":
            with mlcd.start_run("sweep") as run:
                mlcd.log_metric("parent", 1.0)
                workers = [mp.get_context("fork").Process(target=work, args=(i,)) for i in range(3)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                    assert w.exitcode == 0
            print(run.id)
        """,
        cwd=sqlite_project,
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    with project_store(sqlite_project).read() as conn:
        history = runs.metric_history(conn, run_id)
        assert runs.get_run(conn, run_id)["status"] == "finished"
    counts = {key: sum(p.key == key for p in history) for key in {p.key for p in history}}
    assert counts == {"parent": 1, "worker0": 200, "worker1": 200, "worker2": 200}


_WRITER = textwrap.dedent(
    """
    import sys
    import mlcd
    worker = int(sys.argv[1])
    for step in range(1000):
        mlcd.log_metric(f"w{worker}", step * 0.5, step=step)
        if step == 500:
            mlcd.log_params({f"p{worker}": worker})
    """
)


def _many_writers(root: Path, store: Store, processes: int = 32) -> None:
    run_id = _pipeline_run(store)
    env = _stage_env(root, store, run_id, MLCD_FLUSH_INTERVAL="0.05", MLCD_FLUSH_BATCH="200")
    # all at once: each a new process (forked from the suite's fork server, not importing
    # pandas and scikit-learn 32 times), each waited on by a thread of its own
    with ThreadPoolExecutor(max_workers=processes) as pool:
        children = list(
            pool.map(
                lambda i: run_python(_WRITER, [str(i)], root, env, timeout=600, inherit=False),
                range(processes),
            )
        )
    for child in children:
        assert child.returncode == 0, child.stderr
        assert "locked" not in child.stderr
    with store.read() as conn:
        history = runs.metric_history(conn, run_id)
        latest = runs.latest_metrics_of(conn, run_id)
        params = runs.params_of(conn, run_id)
    assert len(history) == processes * 1000
    for i in range(processes):
        steps = [p.step for p in history if p.key == f"w{i}"]
        assert steps == list(range(1000))
        assert latest[f"w{i}"] == 999 * 0.5
        assert params[f"p{i}"] == str(i)


@pytest.mark.slow
def test_32_processes_log_1000_metrics_each_to_one_sqlite_store_and_lose_nothing(
    sqlite_project: Path, project_store
) -> None:
    _many_writers(sqlite_project, project_store(sqlite_project))


@pytest.mark.slow
@pytest.mark.postgres
def test_32_processes_log_1000_metrics_each_to_postgres_and_lose_nothing(
    tmp_path: Path, pg_url: str, project_store
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlcd.yaml").write_text(f"store: {pg_url}\n")
    _many_writers(root, project_store(root))
