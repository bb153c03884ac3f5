"""What a pipeline run leaves in the metadata store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess

from sqlalchemy import select

from mlcd.digest import Digest
from mlcd.objects import LocalObjectStore
from mlcd.store import cache, runs
from mlcd.store import tables as t
from tests.pipeline.conftest import CHAIN, CHAIN_FILES, run_json


def test_run_records_stages_lineage_params_metrics_and_git_state(
    make_project, mlcd, open_store, store_url
) -> None:
    root = make_project(f"store: {store_url}\n" + CHAIN, {**CHAIN_FILES, ".gitignore": "/.mlcd/\n"})
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "init"],
        cwd=root,
        check=True,
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()

    document = run_json(mlcd, root)

    store = open_store(store_url)
    run_id = document["run_id"]
    with store.read() as conn:
        run = runs.get_run(conn, run_id)
        stages = {s["stage"]: s for s in runs.stages_of(conn, run_id)}
        artifacts = runs.artifacts_of(conn, run_id)
        params = runs.params_of(conn, run_id)
        metrics = runs.latest_metrics_of(conn, run_id)
        entries = {e["stage"]: e for e in cache.all_entries(conn)}
    assert run["kind"] == "pipeline" and run["status"] == "finished"
    assert run["git_commit"] == head and run["git_dirty"] is False
    assert {name: s["outcome"] for name, s in stages.items()} == {
        "a": "ran",
        "b": "ran",
        "c": "ran",
    }
    assert all(s["fingerprint"] and s["duration_s"] is not None for s in stages.values())
    assert params == {"a": "1", "b.size": "10"}
    assert metrics == {"score": 0.5}
    roles = {(a.stage, a.role, a.path) for a in artifacts}
    assert ("a", "input", "input.txt") in roles
    assert ("b", "output", "out_b") in roles
    assert ("b", "metrics", "metrics_b.json") in roles
    assert ("c", "log", f".mlcd/logs/{run_id}/c.log") in roles
    log_digest = stages["c"]["log_digest"]
    objects = LocalObjectStore(root / ".mlcd" / "objects")
    assert objects.has(Digest.parse(log_digest))
    assert entries["b"]["metrics"] == {"metrics_b.json": {"score": 0.5}}
    assert entries["b"]["fingerprint"] == stages["b"]["fingerprint"]


def test_restored_and_skipped_stages_are_recorded_with_their_metrics(
    ran_chain, mlcd, open_store
) -> None:
    root = ran_chain()
    (root / "a.txt").unlink()

    document = run_json(mlcd, root)

    store = open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    with store.read() as conn:
        stages = {s["stage"]: s for s in runs.stages_of(conn, document["run_id"])}
        metrics = runs.latest_metrics_of(conn, document["run_id"])
    assert stages["a"]["outcome"] == "cached"
    assert stages["a"]["reason"] == "restored from cache (out missing: a.txt)"
    assert stages["b"]["outcome"] == "skipped"
    assert metrics == {"score": 0.5}


def test_failed_stage_has_no_cache_entry_and_its_log_is_kept(
    make_project, mlcd, open_store
) -> None:
    config = CHAIN.replace(
        'echo "a=$(cat input.txt)" > a.txt && echo a >> calls.log', "echo 'bad input' && exit 1"
    )
    root = make_project(config, CHAIN_FILES)
    result = mlcd(root, "run", "--json")
    run_id = json.loads(result.stdout)["run_id"]

    store = open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    with store.read() as conn:
        run = runs.get_run(conn, run_id)
        stages = {s["stage"]: s for s in runs.stages_of(conn, run_id)}
        cached = {e["stage"] for e in cache.all_entries(conn)}
        blocked = conn.execute(
            select(t.run_stages.c.reason).where(t.run_stages.c.stage == "c")
        ).scalar_one()
    assert run["status"] == "failed"
    assert stages["a"]["outcome"] == "failed"
    assert stages["a"]["error"] == "command exited with code 1"
    assert cached == {"b"}
    assert blocked == "upstream stage a failed"
    log = LocalObjectStore(root / ".mlcd" / "objects").get_bytes(
        Digest.parse(stages["a"]["log_digest"])
    )
    assert log == b"bad input\n"


def test_stage_logging_through_the_python_api_lands_in_the_pipeline_run(
    make_project, mlcd, open_store
) -> None:
    root = make_project(
        """
        stages:
          fit:
            cmd: python -c "import mlcd; mlcd.log_metric('loss', 0.25, step=3); mlcd.flush()" && echo ok > done.txt
            outs: [done.txt]
        """
    )

    document = run_json(mlcd, root)

    store = open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    with store.read() as conn:
        history = runs.metric_history(conn, document["run_id"], "loss")
    assert [(p.value, p.step) for p in history] == [(0.25, 3)]
