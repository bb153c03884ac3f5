"""``mlcd init``: the files of a new project."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlcd.config import STATE_DIR

MLCD_YAML = """\
# mlcd.yaml: the whole lifecycle of this project. Reference: docs/config.md
version: 1

# Metadata and objects live in .mlcd/ by default. For a team:
# store: postgresql://mlcd@db.example.com:5432/mlcd
# artifacts: s3://bucket/mlcd/objects
# remotes:
#   origin: {url: s3://bucket/mlcd/cache}

stages: {}
#  prepare:
#    cmd: python src/prepare.py
#    deps: [src/prepare.py, data/raw.csv]
#    params: [prepare.test_size]
#    outs: [data/prepared]
#  train:
#    cmd: python src/train.py
#    deps: [src/train.py, data/prepared]
#    params: [train]
#    outs: [models/model]
#    metrics: [metrics/train.json]

models: {}
#  churn:
#    path: models/model
#    task: classification
#    target: label
#    eval_data: data/prepared/test.parquet

gates: {}
#  champion:
#    - roc_auc >= 0.85
#    - f1 >= champion.f1 - 0.005
"""

PARAMS_YAML = """\
# params.yaml: hyper-parameters your stages read (declared per stage under 'params:')
seed: 42
"""

GITIGNORE_LINES = [f"/{STATE_DIR}/"]


@dataclass
class InitResult:
    """What ``init`` wrote and what it left alone."""

    root: str
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    #: a ``dvc.yaml`` is there: ``mlcd import dvc`` brings its stages, lock and cache
    dvc_project: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "root": self.root,
            "created": self.created,
            "kept": self.kept,
            "dvc_project": self.dvc_project,
        }


def init_project(root: Path, force: bool = False) -> InitResult:
    """Write ``mlcd.yaml``, ``params.yaml`` and the ``.gitignore`` entry; never overwrite
    an existing file unless ``force``."""
    root.mkdir(parents=True, exist_ok=True)
    result = InitResult(root=str(root.absolute()))
    for name, content in (("mlcd.yaml", MLCD_YAML), ("params.yaml", PARAMS_YAML)):
        path = root / name
        if path.exists() and not force:
            result.kept.append(name)
            continue
        path.write_text(content, encoding="utf-8")
        result.created.append(name)
    gitignore = root / ".gitignore"
    existing = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [line for line in GITIGNORE_LINES if line not in existing]
    if missing:
        prefix = "\n" if existing and existing[-1] != "" else ""
        with gitignore.open("a", encoding="utf-8") as handle:
            handle.write(prefix + "\n".join(missing) + "\n")
        result.created.append(".gitignore")
    else:
        result.kept.append(".gitignore")
    (root / STATE_DIR).mkdir(exist_ok=True)
    result.dvc_project = (root / "dvc.yaml").is_file()
    return result
