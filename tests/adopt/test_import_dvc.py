"""``mlcd import dvc`` on DVC projects made by the real DVC (``dvc init``, ``dvc add``,
``dvc repro``, ``dvc push`` to a folder remote), then driven through the real mlcd CLI.

The project: tracked raw data (a ``.dvc`` pointer), four stages with params — one with a
param interpolated into its command (which DVC tracks on its own), a metrics file kept out
of DVC's cache, a ``foreach`` over a params list — and DVC's top-level ``artifacts:`` (the
key that clashes with mlcd's own ``artifacts:``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli

BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
pytestmark = [
    pytest.mark.skipif(not DVC.exists(), reason="DVC is in the dev extra"),
    pytest.mark.xdist_group("dvc_import"),
]

DVC_YAML = """\
artifacts:
  wordcount:
    path: model/model.json
    type: model
    desc: counts words
  raw:
    path: data/raw.csv
    type: dataset
stages:
  prepare:
    cmd: python src/prepare.py data/raw.csv
    deps: [data/raw.csv, src/prepare.py]
    params: [prepare]
    outs: [data/prepared]
  train:
    cmd: python src/train.py --depth ${train.max_depth}
    deps: [data/prepared, src/train.py]
    params: [train.n_estimators]
    outs: [model/model.json]
  evaluate:
    cmd: python src/evaluate.py
    deps: [model/model.json, data/prepared, src/evaluate.py]
    params: [evaluate.threshold]
    metrics:
      - eval/metrics.json:
          cache: false
  report:
    foreach: ${regions}
    do:
      cmd: python src/report.py ${item}
      deps: [model/model.json, src/report.py]
      outs:
        - reports/${item}.txt
"""

PARAMS = {
    "prepare": {"split": 0.25, "seed": 7},
    "train": {"n_estimators": 5, "max_depth": 3},
    "evaluate": {"threshold": 0.5},
    "regions": ["us", "eu"],
}

SOURCES = {
    "src/prepare.py": """
import os, sys, yaml
p = yaml.safe_load(open("params.yaml"))["prepare"]
rows = open(sys.argv[1]).read().splitlines()
cut = int(len(rows) * (1 - p["split"]))
os.makedirs("data/prepared", exist_ok=True)
open("data/prepared/train.csv", "w").write("\\n".join(rows[:cut]) + "\\n")
open("data/prepared/test.csv", "w").write("\\n".join(rows[cut:]) + "\\n")
""",
    "src/train.py": """
import json, os, sys, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
words = open("data/prepared/train.csv").read().split()
os.makedirs("model", exist_ok=True)
json.dump({"depth": int(sys.argv[2]), "n": p["n_estimators"], "words": len(words)},
          open("model/model.json", "w"))
""",
    "src/evaluate.py": """
import json, os, yaml
t = yaml.safe_load(open("params.yaml"))["evaluate"]["threshold"]
m = json.load(open("model/model.json"))
os.makedirs("eval", exist_ok=True)
json.dump({"score": m["words"] / 1000 + t, "depth": m["depth"]}, open("eval/metrics.json", "w"))
""",
    "src/report.py": """
import json, os, sys
m = json.load(open("model/model.json"))
os.makedirs("reports", exist_ok=True)
open(f"reports/{sys.argv[1]}.txt", "w").write(f"{sys.argv[1]}: {m}\\n")
""",
}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCD_", "PYTEST_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(home / "dvc-site"),
        GIT_CONFIG_NOSYSTEM="1",
    )
    home.mkdir(parents=True, exist_ok=True)
    return env


def run(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = _env(root.parent / "home")
    result = subprocess.run(
        list(args), cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def mlcd(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = run_cli(list(args), cwd=root, env=_env(root.parent / "home"), inherit=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"mlcd {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def mlcd_json(root: Path, *args: str) -> Any:
    return json.loads(mlcd(root, *args, "--json").stdout)


def _make_project(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data/raw.csv").write_text(
        "\n".join(f"row {i} alpha beta {i % 7}" for i in range(400)) + "\n"
    )
    for name, text in SOURCES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text.lstrip())
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    (root / "dvc.yaml").write_text(DVC_YAML)
    run(root, str(DVC), "init", "--no-scm", "-q")
    run(root, str(DVC), "add", "-q", "data/raw.csv")
    run(root, str(DVC), "repro", "-q")
    remote = root.parent / "dvc-remote"
    run(root, str(DVC), "remote", "add", "-d", "storage", str(remote))
    run(root, str(DVC), "push", "-q")


@pytest.fixture(scope="session")
def dvc_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC project after ``dvc repro`` and ``dvc push`` (built once, copied per test)."""
    base = tmp_path_factory.mktemp("dvc-template")
    _make_project(base / "project")
    return base


@pytest.fixture
def project(dvc_template: Path, tmp_path: Path) -> Path:
    shutil.copytree(dvc_template, tmp_path / "copy", symlinks=True)
    root = tmp_path / "copy" / "project"
    # The remote's URL in .dvc/config is absolute: point it at this copy's remote.
    run(root, str(DVC), "remote", "modify", "storage", "url", str(tmp_path / "copy/dvc-remote"))
    return root


def _outputs(root: Path) -> dict[str, bytes]:
    files = {}
    for folder in ("data/prepared", "model", "eval", "reports"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def _remove_outputs(root: Path) -> None:
    for folder in ("data/prepared", "model", "eval", "reports"):
        shutil.rmtree(root / folder, ignore_errors=True)


def _ran(report: dict[str, Any]) -> set[str]:
    return {s["stage"] for s in report["stages"] if s["outcome"] == "ran"}


def test_first_run_after_import_restores_every_output_byte_for_byte(project: Path) -> None:
    before = _outputs(project)
    assert len(before) == 6
    summary = mlcd_json(project, "import", "dvc")
    assert {s["stage"] for s in summary["stages"] if s["imported"]} == {
        "prepare",
        "train",
        "evaluate",
        "report@us",
        "report@eu",
    }
    assert [p["path"] for p in summary["pointers"]] == ["data/raw.csv"]
    config = yaml.safe_load((project / "mlcd.yaml").read_text())
    assert "artifacts" not in config  # DVC's registry key went to models:, not mlcd's store key
    assert config["models"]["wordcount"] == {
        "path": "model/model.json",
        "stage": "train",
        "description": "counts words",
    }
    assert "train.max_depth" in config["stages"]["train"]["params"]  # tracked by DVC from ${...}

    # As found: everything up to date, nothing runs.
    assert {s["status"] for s in mlcd_json(project, "status")["stages"]} == {"up to date"}
    assert _ran(mlcd_json(project, "run")) == set()

    # Outputs gone (a fresh clone): the first run restores all of them, byte for byte.
    _remove_outputs(project)
    report = mlcd_json(project, "run")
    assert _ran(report) == set()
    assert {s["outcome"] for s in report["stages"]} == {"cached"}
    assert _outputs(project) == before
    lock = yaml.safe_load((project / "mlcd.lock").read_text())
    recorded = json.loads(before["eval/metrics.json"])
    assert lock["stages"]["evaluate"]["metrics"]["eval/metrics.json"] == recorded


def test_reimport_adds_nothing(project: Path) -> None:
    mlcd(project, "import", "dvc")
    config, lock = (project / "mlcd.yaml").read_text(), (project / "mlcd.lock").read_text()
    runs_before = mlcd_json(project, "runs", "list")
    again = mlcd_json(project, "import", "dvc")
    assert again["config_written"] is False
    assert (project / "mlcd.yaml").read_text() == config
    assert (project / "mlcd.lock").read_text() == lock
    assert len(mlcd_json(project, "runs", "list")) == len(runs_before)


@pytest.mark.parametrize(
    "change",
    [
        ("evaluate", "threshold", 0.75),
        ("train", "n_estimators", 9),
        ("train", "max_depth", 4),  # interpolated into the command only
        ("prepare", "split", 0.5),
    ],
)
def test_changed_param_reruns_the_stages_dvc_names(
    project: Path, tmp_path: Path, change: tuple[str, str, Any]
) -> None:
    mlcd(project, "import", "dvc")
    section, key, value = change
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_stale = set(json.loads(run(project, str(DVC), "status", "--json").stdout))
    mlcd_stale = {
        s["stage"] for s in mlcd_json(project, "status")["stages"] if s["status"] == "stale"
    }
    assert mlcd_stale == dvc_stale

    # The same stages run as under 'dvc repro' (on a copy, so both start from the same state).
    twin = tmp_path / "twin"
    shutil.copytree(project, twin, symlinks=True)
    repro = run(twin, str(DVC), "repro")
    dvc_ran = set(re.findall(r"Running stage '([^']+)'", repro.stdout))
    assert _ran(mlcd_json(project, "run")) == dvc_ran
    assert _outputs(project) == _outputs(twin)


def test_import_from_the_remote_when_the_cache_is_gone(project: Path) -> None:
    before = _outputs(project)
    shutil.rmtree(project / ".dvc" / "cache")
    _remove_outputs(project)
    (project / "data/raw.csv").unlink()
    summary = mlcd_json(project, "import", "dvc", "--remote", "storage")
    assert summary["source"] == "remote storage"
    assert all(s["imported"] for s in summary["stages"] if s["stage"] != "evaluate")
    # eval/metrics.json was never in DVC's cache (cache: false) and is gone from the workspace:
    # that stage cannot be restored, it runs, as 'dvc repro' would after 'dvc pull'.
    evaluate = next(s for s in summary["stages"] if s["stage"] == "evaluate")
    assert not evaluate["imported"] and "eval/metrics.json" in evaluate["reason"]
    # Tracked data missing from the workspace is checked out by the import, as 'dvc pull' would.
    assert (project / "data/raw.csv").exists()
    assert summary["pointers"][0]["restored"] is True
    report = mlcd_json(project, "run")
    assert _ran(report) == {"evaluate"}
    assert _outputs(project) == before


def test_corrupt_cache_file_is_refused_with_its_md5(project: Path) -> None:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"])
    cached = project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    cached.chmod(0o644)
    cached.write_text('{"tampered": true}')
    result = mlcd(project, "import", "dvc", check=False)
    assert result.returncode != 0
    assert md5 in result.stderr and "model/model.json" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "mlcd.yaml").exists()
    assert not (project / "mlcd.lock").exists()


def test_existing_different_mlcd_yaml_is_kept_without_force(project: Path) -> None:
    (project / "mlcd.yaml").write_text("stages:\n  other:\n    cmd: echo hi\n")
    result = mlcd(project, "import", "dvc", check=False)
    assert result.returncode != 0 and "--force" in result.stderr
    assert (project / "mlcd.yaml").read_text() == "stages:\n  other:\n    cmd: echo hi\n"
    mlcd(project, "import", "dvc", "--force")
    assert "report@eu" in yaml.safe_load((project / "mlcd.yaml").read_text())["stages"]


def test_init_in_a_dvc_project_offers_the_import_which_then_fills_its_stages(
    project: Path,
) -> None:
    init = mlcd(project, "init")
    assert "mlcd import dvc" in init.stdout
    assert json.loads(mlcd(project, "init", "--json").stdout)["dvc_project"] is True
    summary = mlcd_json(project, "import", "dvc")  # no --force needed over the scaffold
    assert summary["config_written"] is True
    config = yaml.safe_load((project / "mlcd.yaml").read_text())
    assert "report@us" in config["stages"] and config["version"] == 1


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "p"
    root.mkdir()
    yield root


def _translate(root: Path, dvc_yaml: str, params: dict[str, Any] | None = None) -> Any:
    from mlcd.adopt.dvc_yaml import translate

    (root / "dvc.yaml").write_text(dvc_yaml)
    if params is not None:
        (root / "params.yaml").write_text(yaml.safe_dump(params))
    return translate(root)


def test_foreach_over_a_mapping_matrix_and_vars_translate(scratch: Path) -> None:
    (scratch / "extra.yaml").write_text("size: 3\nunused: 1\n")
    result = _translate(
        scratch,
        """
vars:
  - extra.yaml:size
  - name: inline
stages:
  fit:
    foreach:
      small: {depth: 2}
      large: {depth: 8}
    do:
      cmd: python fit.py ${key} --depth ${item.depth} --size ${size} --n ${name}
      outs:
        - out/${key}
  grid:
    matrix:
      model: [lr, rf]
      seed: [1, 2]
    cmd: python grid.py ${item.model} ${item.seed} ${lr.rate}
    outs:
      - grid/${item.model}-${item.seed}.json
  echo:
    cmd: echo \\${not_a_var} ${flag}
""",
        {"lr": {"rate": 0.1}, "flag": True},
    )
    # Values from params files stay ${...}: mlcd fills them in at run time.
    assert result.stages["fit@small"]["cmd"] == (
        "python fit.py small --depth 2 --size ${size} --n inline"
    )
    assert result.stages["fit@large"]["outs"] == ["out/large"]
    assert result.stages["fit@small"]["params"] == [{"extra.yaml": ["size"]}]
    assert set(result.stages) >= {"grid@lr-1", "grid@lr-2", "grid@rf-1", "grid@rf-2"}
    assert result.stages["grid@rf-2"]["cmd"] == "python grid.py rf 2 ${lr.rate}"
    assert result.stages["grid@rf-2"]["params"] == ["lr.rate"]
    assert result.stages["echo"]["cmd"] == "echo \\${not_a_var} ${flag}"
    assert result.stages["echo"]["params"] == ["flag"]


@pytest.mark.parametrize(
    ("dvc_yaml", "named"),
    [
        ("stages:\n  get:\n    cmd: x\n    deps: [s3://bucket/data.csv]\n", "s3://bucket/data.csv"),
        ("stages:\n  a:\n    cmd: echo ${missing.key}\n", "missing.key"),
        ("stages:\n  a:\n    cmd: echo ${lr}\n", "inside a string"),
        ("stages:\n  a:\n    cmd: x\n    checkpoint: true\n", "checkpoint"),
        ("stages:\n  a:\n    foreach: [1]\n", "do"),
    ],
)
def test_untranslatable_constructs_are_refused_by_name(
    scratch: Path, dvc_yaml: str, named: str
) -> None:
    from mlcd.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        _translate(scratch, dvc_yaml, {"lr": {"rate": 0.1}})
    assert named in str(caught.value) and "nothing was imported" in str(caught.value)


def test_dvc_yaml_in_a_subfolder_is_refused(scratch: Path) -> None:
    from mlcd.errors import ConfigError

    (scratch / "sub").mkdir()
    (scratch / "sub/dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(ConfigError, match=r"sub/dvc\.yaml"):
        _translate(scratch, "stages:\n  a:\n    cmd: x\n")


def test_no_dvc_project_is_a_clear_error(tmp_path: Path) -> None:
    result = mlcd(tmp_path, "import", "dvc", check=False)
    assert result.returncode != 0
    assert "no dvc.yaml and no .dvc files" in result.stderr and "Traceback" not in result.stderr
