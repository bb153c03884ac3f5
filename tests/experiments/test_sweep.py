"""``mlcd exp sweep``: grid, random and Optuna sweeps run by real worker processes, as child
runs of one parent run; ``exp show --sweep``; bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mlcd.store import Store
from mlcd.store.tables import runs as runs_table
from tests.experiments.conftest import CONFIG, FILES, calls, env_for, git
from tests.pipeline.conftest import Cli


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = env_for(tmp_path)
    if request.param == "postgresql":
        env["MLCD_STORE"] = str(request.getfixturevalue("pg_url"))
    return env


def _store(root: Path, env: dict[str, str]) -> Store:
    return Store(env.get("MLCD_STORE") or f"sqlite:///{root / '.mlcd' / 'mlcd.db'}", root=root)


def _sweep(mlcd: Cli, root: Path, env: dict[str, str], *args: str) -> Any:
    result = mlcd(root, "exp", "sweep", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _children(root: Path, env: dict[str, str], parent: str) -> list[dict[str, Any]]:
    store = _store(root, env)
    try:
        with store.read() as conn:
            rows = conn.execute(select(runs_table).where(runs_table.c.parent_id == parent))
            return [dict(r) for r in rows.mappings()]
    finally:
        store.dispose()


def test_grid_sweep_3x3_makes_nine_child_runs_of_one_parent(
    mlcd: Cli,
    tmp_path: Path,
    committed_for: Callable[..., Path],
) -> None:
    env = env_for(tmp_path)
    root = committed_for(env)

    shown = _sweep(
        mlcd, root, env,
        "--grid", "train.lr=0.1,0.2,0.3", "--grid", "prepare.n=1,2,3",
        "--objective", "metrics.size", "--parallel", "2", "-n", "g",
    )  # fmt: skip

    sweep = shown["sweep"]
    assert sweep["status"] == "finished" and sweep["strategy"] == "grid"
    children = _children(root, env, sweep["id"])
    assert len(children) == 9 and {c["status"] for c in children} == {"finished"}
    assert {c["kind"] for c in children} == {"pipeline"}
    trials = shown["trials"]
    combos = {(t["overrides"]["train.lr"], t["overrides"]["prepare.n"]) for t in trials}
    assert combos == {(lr, n) for lr in (0.1, 0.2, 0.3) for n in (1, 2, 3)}
    sizes = [t["metrics"]["size"] for t in trials]
    assert sizes == sorted(sizes, reverse=True)  # best first: size = 6 * n
    assert sweep["best"] == trials[0]["id"]
    # train.lr=0.1, prepare.n=3 is the baseline: restored from the run cache, not run again
    assert calls(tmp_path).count("train") == 8
    assert git(root, "status", "--porcelain") == ""
    again = mlcd(root, "exp", "show", "--sweep", "g", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert [t["id"] for t in json.loads(again.stdout)["trials"]] == [t["id"] for t in trials]
    table = mlcd(root, "exp", "show", "--sweep", sweep["id"][:10], "--md", env=env)
    assert table.returncode == 0 and table.stdout.count("| g-t") == 9


def test_optuna_sweep_two_workers_share_one_study(
    mlcd: Cli,
    tmp_path: Path,
    committed_for: Callable[..., Path],
    store_env: dict[str, str],
) -> None:
    import optuna

    from mlcd.experiments.sweep import optuna_storage, study_name

    root = committed_for(store_env)

    shown = _sweep(
        mlcd, root, store_env,
        "--optimize", "metrics.score", "--direction", "minimize",
        "--range", "train.lr=0.01:1:log", "--trials", "6", "--parallel", "2", "-n", "opt",
    )  # fmt: skip

    sweep = shown["sweep"]
    store = _store(root, store_env)
    try:
        study = optuna.load_study(study_name=study_name(sweep["id"]), storage=optuna_storage(store))
        numbers = [t.number for t in study.trials]
        assert sorted(numbers) == list(range(6))  # 6 trials in one study, no number twice
        assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
        assert all(0.01 <= t.params["train.lr"] <= 1 for t in study.trials)
        assert study.best_value == pytest.approx(
            min(t["metrics"]["score"] for t in shown["trials"])
        )
        with store.read() as conn:
            from mlcd.store import queue

            entries = queue.entries(conn, sweep_id=sweep["id"])
        if not store.is_sqlite:  # Optuna's tables stay out of mlcd's schema
            from alembic.autogenerate import compare_metadata
            from alembic.migration import MigrationContext

            from mlcd.store import tables

            with store.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), tables.metadata) == []
    finally:
        store.dispose()
    assert len({e["worker"] for e in entries}) == 2  # both workers asked the same study
    assert sorted(e["trial"] for e in entries) == list(range(6))
    children = _children(root, store_env, sweep["id"])
    assert len(children) == 6
    trial_tags = sorted(t["trial"] for t in shown["trials"])
    assert trial_tags == list(range(6))
    scores = [t["metrics"]["score"] for t in shown["trials"]]
    assert scores == sorted(scores)  # minimize: best (smallest) first


def test_random_sweep_draws_ints_and_choices_within_the_space(
    mlcd: Cli,
    tmp_path: Path,
    committed_for: Callable[..., Path],
) -> None:
    env = env_for(tmp_path)
    root = committed_for(env)

    shown = _sweep(
        mlcd, root, env,
        "--random", "3", "--range", "prepare.n=1:4:int", "--choice", "train.lr=0.5,0.25",
        "--seed", "7", "-S", "prepare.n=2",
    )  # fmt: skip

    assert len(shown["trials"]) == 3
    for trial in shown["trials"]:
        assert trial["overrides"]["prepare.n"] in (1, 2, 3, 4)
        assert trial["overrides"]["train.lr"] in (0.5, 0.25)
        assert trial["metrics"]["score"] == pytest.approx(trial["overrides"]["train.lr"] * 10)


def test_sweep_bad_input_is_refused_with_a_clear_error(
    mlcd: Cli,
    tmp_path: Path,
    committed_for: Callable[..., Path],
) -> None:
    env = env_for(tmp_path)
    root = committed_for(env)

    def refused(*args: str) -> str:
        result = mlcd(root, "exp", "sweep", *args, env=env)
        assert result.returncode == 2, result.stderr
        return result.stderr

    assert "--grid 'train.lr': expected KEY=" in refused("--grid", "train.lr")
    assert "an empty value" in refused("--grid", "train.lr=0.1,,0.2")
    unknown = refused("--grid", "train.lrr=0.1,0.2")
    assert "unknown param 'train.lrr'" in unknown and "train.lr" in unknown
    assert "need --random N or --optimize" in refused("--range", "train.lr=0.1:1")
    assert "LOW must be below HIGH" in refused("--random", "2", "--range", "train.lr=1:0.1")
    assert "a log range must be above 0" in refused("--random", "2", "--range", "train.lr=0:1:log")
    assert "is not a metric" in refused(
        "--optimize", "params.lr", "--range", "train.lr=0.1:1", "--trials", "2"
    )
    assert "no params to vary" in refused("--optimize", "metrics.score")
    unknown_sweep = mlcd(root, "exp", "show", "--sweep", "nosuch", env=env)
    assert unknown_sweep.returncode == 3 and "no sweep 'nosuch'" in unknown_sweep.stderr
    assert calls(tmp_path) == []
    store = _store(root, env)
    try:
        with store.read() as conn:
            kinds = set(conn.execute(select(runs_table.c.kind)).scalars())
    finally:
        store.dispose()
    assert "sweep" not in kinds  # nothing was recorded by a refused sweep


@pytest.mark.slow
def test_register_best_registers_the_best_trials_model_and_judges_it_against_the_champion(
    tmp_path: Path, mlcd: Cli
) -> None:
    from tests.ci import conftest as ci

    root = tmp_path / "repo"
    params = ci.PARAMS.replace("rows: 3000", "rows: 600")
    ci.write(
        root,
        {
            "mlcd.yaml": ci.CONFIG,
            "params.yaml": params,
            "src/data.py": ci.DATA,
            "src/train.py": ci.TRAIN,
            ".gitignore": ".mlcd/\n",
        },
    )
    git(root, "init", "-q", "-b", "main")
    assert mlcd(root, "run", "--json").returncode == 0
    promoted = mlcd(root, "models", "promote", "clf", "1", "--force", "--reason", "first")
    assert promoted.returncode == 0, promoted.stderr
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")

    shown = _sweep(
        mlcd, root, {},
        "--grid", "train.C=0.001,0.5", "--objective", "metrics.train_accuracy",
        "--register-best", "-n", "best",
    )  # fmt: skip

    best = shown["sweep"]["best"]
    assert best == shown["trials"][0]["id"]
    (registered,) = shown["registered"]
    assert registered["model"] == "clf" and registered["version"] == 2 and registered["created"]
    assert registered["run_id"] == best
    assert registered["evaluation"]["status"] in ("passed", "failed", "inconclusive")
    assert "against champion" in registered["summary"]
    listed = mlcd(root, "models", "show", "clf", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"champion"' in listed.stdout  # the champion did not move: nothing is promoted
    shown_model = json.loads(listed.stdout)
    assert shown_model["aliases"]["champion"] in (1, "1")
    assert git(root, "status", "--porcelain") == ""


def test_timeout_budget_skips_the_trials_not_started_in_time(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import time

    from tests.experiments.test_queue import HOLDING_TRAIN, _wait_for

    root = make_project(CONFIG, {**FILES, "train.py": HOLDING_TRAIN})
    git(root, "init", "-q", "-b", "main")
    assert mlcd(root, "run", env=env_for(tmp_path)).returncode == 0
    hold = tmp_path / "hold"
    hold.mkdir()
    env = {**env_for(tmp_path), "HOLD_DIR": str(hold), "HOLD_LR": "0.7"}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "exp", "sweep", "--grid", "train.lr=0.7,0.2,0.3",
         "--timeout", "10s", "-n", "timed", "--json"],
        cwd=root, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: (hold / "started").exists(), "the first trial to start")
        started = time.monotonic()  # after the sweep was made: its 10 s are over in 11 s
        _wait_for(lambda: time.monotonic() > started + 11, "the sweep's 10 s to pass")
        (hold / "release").touch()
        out, err = sweep.communicate(timeout=300)
    finally:
        (hold / "release").touch()
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, err
    shown = json.loads(out)
    assert [t["name"] for t in shown["trials"]] == ["timed-t0"]
    assert {p["name"]: p["status"] for p in shown["pending"]} == {
        "timed-t1": "skipped",
        "timed-t2": "skipped",
    }
    assert shown["sweep"]["status"] == "finished"


# train.py that logs its objective at 12 steps. Under $TRIAL_COUNTER each run is worse than
# the one before (10, 9, 8, ... whatever its params), so the median pruner must stop the third.
PRUNED_TRAIN = """
import json, os, time, yaml
import mlcd
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
counter = os.environ.get("TRIAL_COUNTER")
value = lr * 10
if counter:
    n = len(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "a").write("x")
    value = 10.0 - n
    for step in range(12):
        mlcd.log_metric("score", value, step=step)
        mlcd.flush()
        time.sleep(0.25)
open("model.txt", "w").write(f"model lr={lr}\\n")
json.dump({"score": value, "size": 1}, open("metrics.json", "w"))
"""


def test_optuna_sweep_prunes_a_trial_whose_intermediate_values_are_worse(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    import optuna

    from mlcd.experiments.sweep import optuna_storage, study_name

    root = make_project(CONFIG, {**FILES, "train.py": PRUNED_TRAIN})
    git(root, "init", "-q", "-b", "main")
    assert mlcd(root, "run", env=env_for(tmp_path)).returncode == 0
    env = {
        **env_for(tmp_path),
        "TRIAL_COUNTER": str(tmp_path / "counter"),
        "MLCD_EXP_HEARTBEAT_S": "0.3",
    }

    shown = _sweep(
        mlcd, root, env,
        "--optimize", "metrics.score", "--range", "train.lr=0.1:1", "--trials", "3",
        "--prune-startup", "2", "-n", "pr",
    )  # fmt: skip

    store = _store(root, env)
    try:
        study = optuna.load_study(
            study_name=study_name(shown["sweep"]["id"]), storage=optuna_storage(store)
        )
        states = [t.state for t in sorted(study.trials, key=lambda t: t.number)]
    finally:
        store.dispose()
    state = optuna.trial.TrialState
    assert states == [state.COMPLETE, state.COMPLETE, state.PRUNED]
    assert [t["metrics"]["score"] for t in shown["trials"]] == [10.0, 9.0]
    (pending,) = shown["pending"]
    assert pending["name"] == "pr-t2" and pending["status"] == "pruned"
    assert pending["error"].startswith("pruned at step")
    assert shown["sweep"]["status"] == "finished"


def test_sweep_queued_then_run_by_exp_start_ends_its_parent_run(
    mlcd: Cli,
    tmp_path: Path,
    committed_for: Callable[..., Path],
) -> None:
    env = env_for(tmp_path)
    root = committed_for(env)

    made = _sweep(mlcd, root, env, "--grid", "train.lr=0.4,0.5", "--queue", "-n", "later")
    assert made["trials"] == 2 and calls(tmp_path) == []
    started = mlcd(root, "exp", "start", "-j", "2", "--json", env=env)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["counts"] == {"done": 2}

    shown = mlcd(root, "exp", "show", "--sweep", "later", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    sweep = json.loads(shown.stdout)
    assert sweep["sweep"]["status"] == "finished" and len(sweep["trials"]) == 2
    assert len(_children(root, env, made["sweep_id"])) == 2
