"""The Ray executor on a real two-node cluster with no shared project folder.

Two ``ray start`` nodes, each in a folder of its own; objects go through an S3 server (moto)
on 127.0.0.1. Each task runs in a scratch folder, fetches its inputs from S3 by digest and
puts its outputs back; ``mlcd run`` writes them into the workspace and records the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlcd.digest import hash_file
from tests.conftest import run_cli

if TYPE_CHECKING:  # imported by pytest as a plugin (an earlier import would skip its rewrite)
    from tests.conftest_ray import RayCluster, S3Server

pytest_plugins = ["tests.conftest_ray"]
pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.xdist_group("ray")]

STEP = '''\
"""One step of the test pipeline: reads its inputs, writes its outputs and where it ran."""
import json, os, sys, time, yaml

name = sys.argv[1]
os.makedirs("work", exist_ok=True)
with open(f"work/{name}.cwd", "w") as out:
    out.write(os.getcwd())
if name == "prepare":
    scale = yaml.safe_load(open("params.yaml"))["scale"]
    rows = open("data/raw.csv").read().split()[1:]
    with open("work/clean.csv", "w") as out:
        out.write("x\\n" + "".join(f"{int(r) * scale}\\n" for r in rows))
elif name == "feat_a":
    time.sleep(3)  # overlaps feat_b, so the two tasks take one node each
    os.makedirs("work/fa", exist_ok=True)
    values = [int(v) for v in open("work/clean.csv").read().split()[1:]]
    open("work/fa/sum.txt", "w").write(str(sum(values)))
    open("work/fa/count.txt", "w").write(str(len(values)))
elif name == "feat_b":
    time.sleep(3)
    values = [int(v) for v in open("work/clean.csv").read().split()[1:]]
    open("work/fb.txt", "w").write(str(max(values)))
elif name == "train":
    total = int(open("work/fa/sum.txt").read())
    count = int(open("work/fa/count.txt").read())
    top = int(open("work/fb.txt").read())
    json.dump({"mean": total / count, "max": top}, open("model.json", "w"))
    json.dump({"mean": total / count}, open("metrics.json", "w"))
'''

CONFIG = """\
artifacts: s3://{bucket}/objects
stages:
  prepare:
    cmd: python step.py prepare
    deps: [step.py, data/raw.csv]
    params: [scale]
    outs: [work/clean.csv, work/prepare.cwd]
    resources: {{num_cpus: 1}}
  feat_a:
    cmd: python step.py feat_a
    deps: [step.py, work/clean.csv]
    outs: [work/fa, work/feat_a.cwd]
  feat_b:
    cmd: python step.py feat_b
    deps: [step.py, work/clean.csv]
    outs: [work/fb.txt, work/feat_b.cwd]
  train:
    cmd: python step.py train
    deps: [step.py, work/fa, work/fb.txt]
    outs: [model.json, work/train.cwd]
    metrics: [metrics.json]
"""

STAGES = ("prepare", "feat_a", "feat_b", "train")


def _env(cluster: RayCluster, s3: S3Server) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**cluster.env, **s3.env, "PATH": path}


def _project(tmp_path: Path, bucket: str) -> Path:
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "mlcd.yaml").write_text(CONFIG.format(bucket=bucket))
    (root / "params.yaml").write_text("scale: 10\n")
    (root / "step.py").write_text(STEP)
    (root / "data" / "raw.csv").write_text("x\n1\n2\n3\n4\n")
    return root


def _s3_store(url: str, s3: S3Server):  # type: ignore[no-untyped-def]
    from mlcd.objects import open_object_store

    return open_object_store(
        url,
        client_kwargs={"endpoint_url": s3.endpoint},
        key="testing",
        secret="testing",
        skip_instance_cache=True,
    )


def test_pipeline_runs_on_two_nodes_through_s3_without_the_project_folder(
    ray_cluster: RayCluster, s3_server: S3Server, tmp_path: Path
) -> None:
    from mlcd.digest import Digest
    from mlcd.pipeline.lockfile import read_lock

    bucket = s3_server.bucket()
    root = _project(tmp_path, bucket)
    env = _env(ray_cluster, s3_server)

    result = run_cli(["run", "--executor", "ray", "-j", "2", "--json"], cwd=root, env=env)

    assert result.returncode == 0, result.stderr + result.stdout
    document = json.loads(result.stdout)
    assert {s["stage"]: s["outcome"] for s in document["stages"]} == dict.fromkeys(STAGES, "ran")
    assert json.loads((root / "model.json").read_text()) == {"mean": 25.0, "max": 40}
    # Every command ran in a scratch folder of its own, never in the project.
    for stage in STAGES:
        cwd = Path((root / "work" / f"{stage}.cwd").read_text())
        assert f"mlcd-{stage}-" in str(cwd), cwd
        assert not cwd.is_relative_to(root)
        assert not cwd.exists()  # removed once its outputs were put back
    # The two feature stages overlapped, each holding the one CPU of a node.
    logs = {
        stage: (
            root / next(s["log"] for s in document["stages"] if s["stage"] == stage)
        ).read_text()
        for stage in STAGES
    }
    nodes = {line.split()[5] for log in logs.values() for line in log.splitlines()
             if line.startswith("mlcd: ran on Ray node")}  # fmt: skip
    assert len(nodes) == 2, logs
    # Outputs by digest: the workspace holds exactly what the lock names, and S3 holds it too.
    store = _s3_store(f"s3://{bucket}/objects", s3_server)
    lock = read_lock(root)
    for stage in STAGES:
        for path, text in lock[stage].outs.items():
            digest = Digest.parse(text)
            assert store.has(digest), (stage, path)
            if digest.is_dir:
                entries = store.read_manifest(digest)
                assert {e.path for e in entries} == {"count.txt", "sum.txt"}
                for entry in entries:
                    assert hash_file(root / path / entry.path) == entry.digest
            else:
                assert hash_file(root / path) == digest, (stage, path)
                assert store.get_bytes(digest) == (root / path).read_bytes()

    again = run_cli(["run", "--executor", "ray", "--json"], cwd=root, env=env)

    assert again.returncode == 0, again.stderr
    assert {s["outcome"] for s in json.loads(again.stdout)["stages"]} == {"skipped"}


DRIVER = """\
import json, sys
from pathlib import Path
from mlcd.errors import ObjectNotFound
from mlcd.objects import open_object_store
from mlcd.pipeline.executors import Job, open_executor

root, url, digest = sys.argv[1:4]
objects = open_object_store(url)
executor = open_executor("ray", 1, objects)
job = Job("train", "cat in.csv > out.csv", root, {}, str(Path(root) / "train.log"),
          root=root, inputs={"in.csv": digest}, outputs=("out.csv",))
try:
    executor.submit(job).result()
except ObjectNotFound as exc:
    print(json.dumps({"mode": executor.mode, "error": exc.message}))
finally:
    executor.close()
"""


def test_an_input_missing_from_the_store_and_the_workspace_is_named_by_digest(
    ray_cluster: RayCluster, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    missing = "ab" * 32
    (tmp_path / "driver.py").write_text(DRIVER)

    result = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path), f"s3://{bucket}/o", missing],
        env={**os.environ, **_env(ray_cluster, s3_server)},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["mode"] == "store"
    assert answer["error"] == (
        f"stage 'train': input in.csv (object {missing}) is neither in s3://{bucket}/o "
        "nor in the workspace"
    )


def test_a_worker_names_the_input_it_cannot_fetch(s3_server: S3Server, tmp_path: Path) -> None:
    """The worker's side: an object that vanished from the store after the driver checked."""
    from mlcd.pipeline.executors.scratch import ScratchTask, run_in_scratch

    bucket = s3_server.bucket()
    missing = "cd" * 32
    task = ScratchTask(
        "train",
        "touch ran.txt",
        ".",
        s3_server.env,
        {"data/in.csv": missing},
        ("ran.txt",),
        f"s3://{bucket}/objects",
    )

    result = run_in_scratch(task, node="n1")

    assert result.returncode != 0
    assert result.outputs == {}
    assert result.error is not None
    assert result.error.startswith(
        f"stage 'train': input data/in.csv (object {missing}) could not be fetched from "
        f"s3://{bucket}/objects on "
    )
    assert f"object {missing} is not in s3://{bucket}/objects" in result.error


def test_a_ray_address_nobody_answers_is_a_config_error(tmp_path: Path) -> None:
    from tests.conftest_ray import free_port

    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlcd.yaml").write_text("stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n")
    address = f"127.0.0.1:{free_port()}"

    result = run_cli(["run", "--executor", "ray"], cwd=root, env={"RAY_ADDRESS": address})

    assert result.returncode == 2, result.stderr
    assert f"no Ray cluster answers at RAY_ADDRESS={address}" in result.stderr
    assert not (root / "a.txt").exists()


def test_a_sweep_runs_its_trials_on_the_cluster_through_s3(
    ray_cluster: RayCluster, s3_server: S3Server, tmp_path: Path
) -> None:
    """``mlcd exp sweep --executor ray``: every trial's stages are Ray tasks in scratch
    folders; each trial's outputs are in S3 by the digests its run recorded."""
    from mlcd.digest import Digest
    from mlcd.project import Project
    from mlcd.store import runs

    bucket = s3_server.bucket()
    root = _project(tmp_path, bucket)
    (root / ".gitignore").write_text("/.mlcd/\n/work/\n/model.json\n/metrics.json\n")
    env = _env(ray_cluster, s3_server)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=root,
            check=True,
        )

    result = run_cli(
        ["exp", "sweep", "--grid", "scale=10,20", "--objective", "metrics.mean", "-n", "on-ray",
         "--executor", "ray", "--parallel", "2", "--json"],
        cwd=root,
        env=env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr + result.stdout
    assert not (root / "model.json").exists()  # the work tree was not touched
    shown = run_cli(["exp", "show", "--sweep", "on-ray", "--json"], cwd=root, env=env)
    assert shown.returncode == 0, shown.stderr
    trials = json.loads(shown.stdout)["trials"]
    assert len(trials) == 2
    store = _s3_store(f"s3://{bucket}/objects", s3_server)
    means = set()
    with Project.open(root) as project, project.store.read() as conn:
        for trial in trials:
            outputs = [a for a in runs.artifacts_of(conn, trial["id"]) if a.role == "output"]
            for ref in outputs:
                assert store.has(Digest.parse(ref.digest)), ref.path
            model = next(a for a in outputs if a.path == "model.json")
            means.add(json.loads(store.get_bytes(Digest.parse(model.digest)))["mean"])
            log = next(a for a in outputs if a.path == "work/train.cwd")
            ran_in = store.get_bytes(Digest.parse(log.digest)).decode()
            assert "mlcd-train-" in ran_in and not ran_in.startswith(str(root))
    assert means == {25.0, 50.0}  # scale 10 and 20: each trial's own outputs
