"""``mlcd exp push|pull|list-remote`` through the real CLI: two git clones sharing experiments
through a remote folder and through S3 (a moto server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.experiments.conftest import CONFIG, committed_project, env_for, exp_json, git
from tests.pipeline.conftest import Cli

FOLDER_REMOTE = "\nremotes:\n  origin: {url: ../remote}\n"
OUTPUTS = ("mlcd.lock", "params.yaml", "prepared.txt", "model.txt", "metrics.json")


def _committed(templates: Callable[..., Path], tmp_path: Path, config: str) -> Path:
    """The first clone: the project with ``config``, run once and committed (a copy of the
    session's, made by the same CLI and git calls; no calls.log is left in ``tmp_path``)."""
    return committed_project(templates(config), tmp_path)


def _clone(first: Path, tmp_path: Path) -> Path:
    second = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(first), str(second))
    return second


def _share_and_apply(
    first: Path,
    second: Path,
    mlcd: Cli,
    tmp_path: Path,
    env: dict[str, str],
    second_env: dict[str, str] | None = None,
) -> Any:
    """Run an experiment in ``first``, push it, pull and apply it in ``second``; check bytes."""

    def exp(root: Path, *args: str) -> Any:
        extra = second_env if root == second and second_env else {}
        done = mlcd(root, "exp", *args, "--json", env={**env_for(tmp_path), **env, **extra})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    ran = exp(first, "run", "-S", "train.lr=0.7", "-S", "prepare.n=2", "-n", "hot")
    pushed = exp(first, "push", "hot")
    assert pushed["done"] == [{"id": ran["run_id"], "name": "hot"}]
    assert pushed["objects_copied"] >= 5  # 3 outputs, the lock, the params file
    assert pushed["entries_copied"] == 2  # both stages ran with new params

    assert [e["name"] for e in exp(second, "list-remote")] == ["hot"]
    pulled = exp(second, "pull", "hot")
    assert pulled["done"] == [{"id": ran["run_id"], "name": "hot"}]
    assert pulled["entries_copied"] == 2
    shown = exp(second, "show")
    assert [(e["name"], e["id"]) for e in shown["experiments"]] == [("hot", ran["run_id"])]
    row = shown["experiments"][0]
    assert row["metrics"] == {"score": 7.0, "size": 12.0}
    assert row["params"]["train.lr"] == "0.7" and row["status"] == "finished"

    again = exp(second, "pull", "--all")  # idempotent: nothing new
    assert again["done"] == [] and again["present"] == [{"id": ran["run_id"], "name": "hot"}]
    assert len(exp(second, "show")["experiments"]) == 1

    exp(first, "apply", "hot")
    exp(second, "apply", ran["run_id"][:8])
    for path in OUTPUTS:
        assert (second / path).read_bytes() == (first / path).read_bytes(), path
    assert (second / "model.txt").read_text() == "model lr=0.7 size=12\n"
    rerun = mlcd(second, "run", "--json", env={**env_for(tmp_path), **env, **(second_env or {})})
    assert rerun.returncode == 0, rerun.stderr
    assert (tmp_path / "calls.log").read_text().split() == ["prepare", "train"]  # first's only
    return ran


def test_exp_push_pull_through_a_remote_folder_and_apply_byte_for_byte(
    committed_templates: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    first = _committed(committed_templates, tmp_path, CONFIG + FOLDER_REMOTE)
    second = _clone(first, tmp_path)

    ran = _share_and_apply(first, second, mlcd, tmp_path, {})

    document = json.loads((tmp_path / "remote" / "exp" / f"{ran['run_id']}.json").read_text())
    assert document["format"] == "mlcd.exp/1"
    assert document["tags"]["mlcd.exp.name"] == "hot"
    pushed_again = exp_json(mlcd, first, tmp_path, "push", "--all")
    assert pushed_again["present"] == [{"id": ran["run_id"], "name": "hot"}]
    assert pushed_again["objects_copied"] == 0


@pytest.mark.postgres
def test_exp_pull_into_a_clone_whose_store_is_postgresql(
    committed_templates: Callable[..., Path], mlcd: Cli, tmp_path: Path, pg_url: str
) -> None:
    first = _committed(committed_templates, tmp_path, CONFIG + FOLDER_REMOTE)
    second = _clone(first, tmp_path)

    _share_and_apply(first, second, mlcd, tmp_path, {}, {"MLCD_STORE": pg_url})

    assert not (second / ".mlcd" / "mlcd.db").exists()  # the records went to PostgreSQL


def test_exp_pull_skips_an_experiment_whose_objects_the_remote_lacks(
    committed_templates: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    first = _committed(committed_templates, tmp_path, CONFIG + FOLDER_REMOTE)
    second = _clone(first, tmp_path)
    ran = exp_json(mlcd, first, tmp_path, "run", "-S", "train.lr=0.3", "-n", "lost")
    exp_json(mlcd, first, tmp_path, "push", "lost")
    model = next(
        a["digest"]
        for a in json.loads((tmp_path / "remote" / "exp" / f"{ran['run_id']}.json").read_text())[
            "artifacts"
        ]
        if a["path"] == "model.txt" and a["role"] == "output"
    )
    (tmp_path / "remote" / model[:2] / model[2:]).unlink()

    pulled = mlcd(second, "exp", "pull", "lost")

    assert pulled.returncode == 1
    assert "lost: the remote lacks 1 of its objects" in pulled.stderr
    assert exp_json(mlcd, second, tmp_path, "show")["experiments"] == []


def test_exp_pull_refuses_a_document_with_an_unsafe_params_path(
    committed_templates: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    first = _committed(committed_templates, tmp_path, CONFIG + FOLDER_REMOTE)
    second = _clone(first, tmp_path)
    ran = exp_json(mlcd, first, tmp_path, "run", "-S", "train.lr=0.3", "-n", "evil")
    exp_json(mlcd, first, tmp_path, "push", "evil")
    path = tmp_path / "remote" / "exp" / f"{ran['run_id']}.json"
    document = json.loads(path.read_text())
    for item in document["artifacts"]:
        if item["path"] == "mlcd.exp/params/params.yaml":
            item["path"] = "mlcd.exp/params/../../outside.yaml"
    path.write_text(json.dumps(document))

    pulled = mlcd(second, "exp", "pull", "--all")

    assert pulled.returncode == 2  # an unsafe path, as 'mlcd pull' reports one
    assert "outside.yaml" in pulled.stderr and "refused" in pulled.stderr
    assert exp_json(mlcd, second, tmp_path, "show")["experiments"] == []
    assert not (tmp_path / "outside.yaml").exists()


def test_exp_push_pull_refuse_bad_input_with_clear_errors(
    committed_templates: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    alone = _committed(committed_templates, tmp_path, CONFIG)  # no remote declared
    exp_json(mlcd, alone, tmp_path, "run", "-S", "train.lr=0.3", "-n", "x")
    no_remote = mlcd(alone, "exp", "push", "x")
    assert no_remote.returncode == 2
    assert "no remote chosen (declared: none)" in no_remote.stderr
    assert "remotes:" in no_remote.stderr

    (alone / "mlcd.yaml").write_text(CONFIG + FOLDER_REMOTE)
    unknown = mlcd(alone, "exp", "push", "nope")
    assert unknown.returncode == 2
    assert "no experiment 'nope'" in unknown.stderr
    assert not (tmp_path / "remote" / "exp").exists()  # nothing was sent

    neither = mlcd(alone, "exp", "push")
    assert neither.returncode == 2
    assert "name them (or their run ids), or pass --all" in neither.stderr
    both = mlcd(alone, "exp", "pull", "x", "--all")
    assert both.returncode == 2

    missing = mlcd(alone, "exp", "pull", "ghost")
    assert missing.returncode == 2
    assert "holds no experiment 'ghost'" in missing.stderr
    assert "mlcd exp push ghost" in missing.stderr


# ------------------------------------------------------------------------------- S3


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.mark.s3
@pytest.mark.xdist_group("s3")
def test_exp_push_pull_through_s3_and_apply_byte_for_byte(
    committed_templates: Callable[..., Path],
    mlcd: Cli,
    tmp_path: Path,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    bucket = f"mlcd-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    remote = (
        f"\nremotes:\n  origin:\n    url: s3://{bucket}/store\n"
        f"    options: {{client_kwargs: {{endpoint_url: '{s3_endpoint}'}}}}\n"
    )
    first = _committed(committed_templates, tmp_path, CONFIG + remote)
    second = _clone(first, tmp_path)

    ran = _share_and_apply(first, second, mlcd, tmp_path, dict(os.environ) | S3_ENV)

    keys = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=bucket, Prefix="store/exp/"
    )
    assert [o["Key"] for o in keys.get("Contents", [])] == [f"store/exp/{ran['run_id']}.json"]
