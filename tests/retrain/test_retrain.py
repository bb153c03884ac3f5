"""Retraining end to end on a real project: triggers, gates, promotion, guards, resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.retrain.conftest import RetrainProject, stage_env


def _events(project: RetrainProject, kind: str | None = None) -> list[dict]:
    args = ["events", "clf", "--json", "--limit", "500"] + (["--kind", kind] if kind else [])
    result = project.cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _champion(project: RetrainProject) -> int | None:
    result = project.cli("models", "list", "--json")
    models = json.loads(result.stdout)
    return models[0]["aliases"].get("champion") if models else None


def test_manual_retrain_promotes_then_gates_refuse_a_worse_model(
    first_retrain: tuple[RetrainProject, subprocess.CompletedProcess[str]],
) -> None:
    # the first `mlcd retrain clf --reason baseline --json` on a fresh project, made once for
    # the session (the other tests start from copies of it), and a copy of its project
    project, first = first_retrain
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "promoted"
    assert _champion(project) == 1

    project.set_noise(0.45)  # flips almost half the labels: clearly worse
    worse = project.cli("retrain", "clf", "--reason", "bad params", "--json")
    assert worse.returncode == 1
    outcome = json.loads(worse.stdout)
    assert outcome["status"] == "refused" and outcome["version"] == 2
    assert "accuracy" in outcome["reason"] and "short by" in outcome["reason"]
    assert _champion(project) == 1  # the alias did not move
    refused = _events(project, "retrain.refused")
    assert refused and refused[0]["version"] == 2
    assert (Path(outcome["report_dir"]) / "report.md").is_file()


def test_new_data_fires_only_when_the_data_changes(baselined: RetrainProject) -> None:
    project = baselined  # the baseline retrain was made once for the session and copied
    first_look = project.cli("watch", "--once", "--json")
    assert first_look.returncode == 0, first_look.stderr
    assert json.loads(first_look.stdout.splitlines()[-1])["retrains"] == []
    unchanged = json.loads(project.cli("watch", "--once", "--json").stdout.splitlines()[-1])
    assert unchanged["retrains"] == []
    assert unchanged["triggers"]["clf"][0]["reason"] == "tracked data unchanged"

    project.raw(seed=2)
    fired = json.loads(project.cli("watch", "--once", "--json").stdout.splitlines()[-1])
    assert fired["triggers"]["clf"][0]["fired"] is True
    assert [r["status"] for r in fired["retrains"]] == ["promoted"]
    assert _champion(project) == 2
    again = json.loads(project.cli("watch", "--once", "--json").stdout.splitlines()[-1])
    assert again["retrains"] == []  # the new digests were remembered
    assert [e["kind"] for e in _events(project, "trigger.fired")] == ["trigger.fired"]


def test_schedule_fires_per_tick_and_respects_the_daily_budget(
    project: RetrainProject, open_store
) -> None:
    from mlcd.config import load_config
    from mlcd.objects import open_object_store
    from mlcd.retrain.context import Context
    from mlcd.retrain.triggers import evaluate_triggers
    from mlcd.retrain.watch import run_pass

    project.config(
        "retrain:\n  clf:\n    triggers:\n      schedule: '0 * * * *'\n    promote_to: champion\n    cooldown: 0s\n    max_per_day: 1\n"
    )
    config = load_config(project.root)
    ctx = Context(
        project.root,
        config,
        open_store(config.store.replace("sqlite:///", f"sqlite:///{project.root}/")),
        open_object_store(config.artifacts, project.root),
    )
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600) + 60  # one minute past an hour
    assert not evaluate_triggers(ctx, "clf", at=t0)[0].fired  # first look records the tick
    assert not evaluate_triggers(ctx, "clf", at=t0 + 600)[0].fired  # same hour: not due
    old_path = os.environ["PATH"]
    os.environ["PATH"] = stage_env()["PATH"]
    try:
        report = run_pass(ctx, at=t0 + 3600)  # the next hour's tick
        assert report.triggers["clf"][0]["fired"] and report.retrains[0]["status"] == "promoted"
        budget = run_pass(ctx, at=t0 + 7200)  # another tick, but 1 retrain per day
    finally:
        os.environ["PATH"] = old_path
    assert budget.triggers["clf"][0]["fired"]
    assert (
        budget.retrains[0]["status"] == "skipped" and "daily budget" in budget.retrains[0]["reason"]
    )


def test_two_watchers_never_retrain_the_same_model_at_once(watched: RetrainProject) -> None:
    project = watched  # baseline retrained and the data digests recorded (copied)
    project.raw(seed=3, rows=60_000)  # bigger data: a retrain that takes a while
    env = {**os.environ, **stage_env()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mlcd.cli.main", "watch", "--once", "--json"],
            cwd=project.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    started = _events(project, "retrain.started")
    # one retrain for the data change (besides the baseline), whatever the interleaving:
    # the second watcher either lost the lock or found the new digests already handled
    assert len(started) == 2, [e["reason"] for e in started]


@pytest.mark.slow
def test_watch_killed_mid_retrain_resumes_cleanly(watched: RetrainProject) -> None:
    project = watched  # baseline retrained and the data digests recorded (copied)
    (project.root / "train.py").write_text(
        "import time, pathlib\npathlib.Path('train.started').write_text('x')\ntime.sleep(8)\n"
        + (project.root / "train.py").read_text()
    )
    project.raw(seed=4)
    env = {**os.environ, **stage_env(), "MLCD_RETRAIN_LEASE_S": "6"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "watch", "--interval", "1"],
        cwd=project.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (project.root / "train.started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (project.root / "train.started").exists()
    os.killpg(proc.pid, signal.SIGKILL)  # the daemon and its stage die mid-retrain
    proc.wait()
    (project.root / "train.py").write_text(
        (project.root / "train.py").read_text().split("time.sleep(8)\n", 1)[1]
    )
    # the lease of the dead watcher expires (6 s here); then the next watch starts over cleanly
    resumed = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = run_cli(
            ["watch", "--once", "--json"],
            cwd=project.root,
            env={**stage_env(), "MLCD_RETRAIN_LEASE_S": "6"},
        )
        assert result.returncode == 0, result.stderr
        resumed = json.loads(result.stdout.splitlines()[-1])
        if resumed["retrains"]:
            break
        time.sleep(2)
    assert resumed and [r["status"] for r in resumed["retrains"]] == ["promoted"]
    interrupted = _events(project, "retrain.interrupted")
    assert len(interrupted) == 1 and "did not finish" in interrupted[0]["reason"]
    assert _champion(project) == 2


def _signals_context(project: RetrainProject, open_store, policy: str):  # type: ignore[no-untyped-def]
    """A retrain context on a baselined project (v1 promoted by the baseline retrain)."""
    from mlcd.config import load_config
    from mlcd.objects import open_object_store
    from mlcd.retrain.context import Context

    project.config(policy)
    config = load_config(project.root)
    store = open_store(f"sqlite:///{project.root / '.mlcd' / 'mlcd.db'}")
    return Context(project.root, config, store, open_object_store(config.artifacts, project.root))


def _log_predictions(ctx, rows):  # type: ignore[no-untyped-def]
    from tests.monitor.conftest import PredictionLogDir

    return PredictionLogDir(ctx.root, ctx.store).write("clf", 1, rows)


def _traffic(n: int, shift: float, seed: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n) + shift, "b": rng.normal(size=n) + shift})
    frame["prediction"] = (frame["a"] + 0.5 * frame["b"] > 0).astype(int)
    frame["ts"] = time.time() - 600
    return frame


def test_drift_trigger_fires_on_shifted_traffic_only(baselined: RetrainProject, open_store) -> None:  # type: ignore[no-untyped-def]
    from mlcd.retrain.triggers import evaluate_triggers

    ctx = _signals_context(
        baselined, open_store, "retrain:\n  clf:\n    triggers:\n      drift: {share: 0.5}\n"
    )
    _log_predictions(ctx, _traffic(600, 0.0, seed=11))
    (calm,) = evaluate_triggers(ctx, "clf")
    assert calm.trigger == "drift" and not calm.fired, calm.reason
    _log_predictions(ctx, _traffic(3000, 2.5, seed=12))
    (drifted,) = evaluate_triggers(ctx, "clf")
    assert drifted.fired and set(drifted.details["drifted"]) == {"a", "b"}


def test_decay_trigger_fires_when_labels_disagree(baselined: RetrainProject, open_store) -> None:  # type: ignore[no-untyped-def]
    from mlcd.retrain.triggers import evaluate_triggers
    from tests.monitor.conftest import PredictionLogDir

    ctx = _signals_context(
        baselined,
        open_store,
        "retrain:\n  clf:\n    triggers:\n      decay: {metric: accuracy, below: 0.7, min_labels: 50}\n",
    )
    log = PredictionLogDir(ctx.root, ctx.store)
    traffic = _traffic(200, 0.0, seed=13)
    traffic["request_id"] = [f"r{i}" for i in range(len(traffic))]
    log.write("clf", 1, traffic)
    (unlabelled,) = evaluate_triggers(ctx, "clf")
    assert not unlabelled.fired
    # labels arrive after their predictions and before the join's settling delay
    log.feedback(
        "clf",
        {rid: int(p) for rid, p in zip(traffic["request_id"], traffic["prediction"], strict=True)},
        time.time() - 300,
    )
    (right,) = evaluate_triggers(ctx, "clf")
    assert not right.fired and right.details["value"] == pytest.approx(1.0), right.reason
    later = _traffic(200, 0.0, seed=14)
    later["request_id"] = [f"s{i}" for i in range(len(later))]
    log.write("clf", 1, later)
    log.feedback(
        "clf",
        {rid: 1 - int(p) for rid, p in zip(later["request_id"], later["prediction"], strict=True)},
        time.time() - 200,
    )
    (wrong,) = evaluate_triggers(ctx, "clf")
    assert wrong.fired and wrong.details["value"] == pytest.approx(0.5, abs=0.01), wrong.reason


def test_labels_trigger_fires_once_per_threshold_and_waits_out_the_cooldown(
    baselined: RetrainProject, open_store
) -> None:
    """Through the watch's pass on a real project: labels that fire during the cooldown wait
    (the retrain is skipped and the labels are not forgotten); once the cooldown allows it they
    retrain; after that, fewer than N new labels do not fire, N do."""
    from mlcd.config import load_config
    from mlcd.objects import open_object_store
    from mlcd.retrain.context import Context
    from mlcd.retrain.watch import run_pass
    from mlcd.store import predictions

    project = baselined  # the baseline retrain (made once for the session, copied) just ran

    def context(cooldown: str) -> Context:
        project.config(
            "retrain:\n  clf:\n    triggers:\n      labels: {count: 3}\n"
            f"    promote_to: champion\n    cooldown: {cooldown}\n    max_per_day: 50\n"
        )
        config = load_config(project.root)
        store = open_store(config.store.replace("sqlite:///", f"sqlite:///{project.root}/"))
        return Context(
            project.root, config, store, open_object_store(config.artifacts, project.root)
        )

    def label(ctx: Context, *ids: str) -> None:
        ctx.store.transact(
            lambda conn: predictions.add_feedback(
                conn, [{"request_id": i, "label": 1} for i in ids], "clf"
            )
        )

    def labels_result(report) -> dict:  # type: ignore[no-untyped-def]
        return next(t for t in report.triggers["clf"] if t["trigger"] == "labels")

    old_path = os.environ["PATH"]
    os.environ["PATH"] = stage_env()["PATH"]
    try:
        ctx = context("1h")  # the baseline retrain just ran: the cooldown is on
        label(ctx, "a", "b")
        first = run_pass(ctx)
        assert not labels_result(first)["fired"] and first.retrains == []  # first look records
        label(ctx, "c", "d", "e")
        cooling = run_pass(ctx)
        assert labels_result(cooling)["fired"]
        assert cooling.retrains[0]["status"] == "skipped"
        assert "cooldown" in cooling.retrains[0]["reason"]

        ctx = context("0s")  # the same labels, once the cooldown allows: not forgotten
        after = run_pass(ctx)
        assert labels_result(after)["fired"]
        assert after.retrains[0]["status"] == "unchanged"  # same data: same model
        label(ctx, "f", "g")
        short = run_pass(ctx)
        assert not labels_result(short)["fired"] and short.retrains == []
        label(ctx, "h")
        again = run_pass(ctx)
        assert labels_result(again)["fired"] and again.retrains[0]["status"] == "unchanged"
    finally:
        os.environ["PATH"] = old_path
    started = _events(project, "retrain.started")
    assert len(started) == 3  # the baseline and the two label-triggered retrains
