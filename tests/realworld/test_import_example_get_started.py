"""``mlcd import dvc`` on the example-get-started shape (see example_get_started/README.md).

The real DVC runs the project first (``dvc init``, ``dvc add data/data.xml``, ``dvc repro``)
on synthetic posts in its input format; then ``mlcd import dvc`` and the first ``mlcd run``
must restore every output byte for byte without running a stage. The dvc.yaml has what the
public project's has and a hand port trips on: a top-level ``artifacts:`` (DVC's registry,
which collides with mlcd's own key), top-level ``metrics:``/``plots:`` naming files inside a
stage's out folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.adopt.test_import_dvc import DVC, mlcd, mlcd_json, run
from tests.realworld.synthetic import write_posts

EXAMPLE = Path(__file__).resolve().parent / "example_get_started"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DVC.exists(), reason="DVC is in the dev extra"),
    pytest.mark.xdist_group("dvc_import"),
]
OUTS = ("data/prepared", "data/features", "model.pkl", "eval")


def _outputs(root: Path) -> dict[str, bytes]:
    files = {}
    for out in OUTS:
        path = root / out
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files.update({p.relative_to(root).as_posix(): p.read_bytes() for p in found})
    return files


def test_import_then_first_run_restores_everything(tmp_path: Path) -> None:
    root = tmp_path / "example-get-started"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(EXAMPLE / name, root / name)
    shutil.copytree(EXAMPLE / "src", root / "src")
    write_posts(root / "data" / "data.xml", count=3000)
    run(root, str(DVC), "init", "--no-scm", "-q")
    run(root, str(DVC), "add", "-q", "data/data.xml")
    run(root, str(DVC), "repro", "-q")
    before = _outputs(root)
    assert "eval/metrics.json" in before and "model.pkl" in before

    summary = mlcd_json(root, "import", "dvc")
    assert [s["stage"] for s in summary["stages"] if s["imported"]] == [
        "prepare",
        "featurize",
        "train",
        "evaluate",
    ]
    config = yaml.safe_load((root / "mlcd.yaml").read_text())
    assert config["models"]["text-classification"]["stage"] == "train"
    assert config["stages"]["evaluate"]["metrics"] == ["eval/metrics.json"]
    assert "eval/plots/roc.csv" in config["stages"]["evaluate"]["plots"]
    mlcd(root, "config", "validate")

    for out in OUTS:
        path = root / out
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    report = mlcd_json(root, "run")
    assert {s["outcome"] for s in report["stages"]} == {"cached"}
    assert _outputs(root) == before
    lock = yaml.safe_load((root / "mlcd.lock").read_text())
    metrics = json.loads(before["eval/metrics.json"])
    assert lock["stages"]["evaluate"]["metrics"]["eval/metrics.json"]["roc_auc.test"] == (
        metrics["roc_auc"]["test"]
    )
