"""`mlcd ci` end to end: real git repositories, the real pipeline, real scikit-learn models."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ci.conftest import (
    Cli,
    ci_json,
    commit_all,
    git,
    make_project,
    set_params,
    stage_env,
    write,
)
from tests.conftest import run_cli

RELATIVE_GATE = "roc_auc >= champion.roc_auc - 0.02"
#: Two of the four features carry almost no signal: clearly worse than the champion, but
#: still over the absolute gate, so the relative gate is the one that fails.
WORSE = {"features": ["x2", "x3"]}


def junit_cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    """``{(classname, name): testcase}`` of a JUnit file, parsed with xml.etree."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {(c.get("classname", ""), c.get("name", "")): c for c in root.iter("testcase")}


def champion_version(root: Path, mlcd: Cli) -> int | None:
    """The version the champion alias points at, as ``mlcd models show`` reports it."""
    result = mlcd(root, "models", "show", "clf", "--json")
    assert result.returncode == 0, result.stderr
    aliases = json.loads(result.stdout)["aliases"]
    return None if "champion" not in aliases else int(aliases["champion"])


@pytest.fixture(scope="module")
def _first_promotion(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str], Path]:
    """A fresh repository after ``mlcd ci --promote --report <file> --json``, made once for the
    module by the real CLI: the repository, that call's result and its report (written beside
    the repository, so the repository holds what a plain ``ci --promote`` leaves)."""
    base = tmp_path_factory.mktemp("ci-promoted")
    root = make_project(base / "repo")
    report = base / "first-report.md"
    result = run_cli(
        ["ci", "--promote", "--report", str(report), "--json"], cwd=root, env=stage_env()
    )
    return root, result, report


@pytest.fixture
def promoted_repo(
    _first_promotion: tuple[Path, subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> tuple[Path, subprocess.CompletedProcess[str], Path]:
    """A copy of the module's first-promotion repository (git, .mlcd and all) for this test."""
    template, result, report = _first_promotion
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    return root, result, report


def test_first_pull_request_without_champion_passes_and_writes_both_reports(
    make_repo: Callable[..., Path], mlcd: Cli
) -> None:
    root = make_repo()
    git(root, "checkout", "-q", "-b", "feature")
    set_params(root, C=0.5)
    commit_all(root, "tune C")

    result = mlcd(
        root,
        "ci",
        "--base",
        "main",
        "--report",
        "out/report.md",
        "--junit",
        "out/junit.xml",
        "--json",
    )

    assert result.returncode == 0, result.stderr
    document = ci_json(result)
    assert document["verdict"] == "passed"
    assert document["ran"] == ["data", "train"]
    (model,) = document["models"]
    assert (model["ref"], model["status"], model["created"]) == ("clf/1", "passed", True)
    assert model["champion"] is None and model["promoted"] is False
    report = (root / "out/report.md").read_text()
    assert report.startswith("## ✅ mlcd ci passed")
    assert "no champion yet" in report
    assert "first model of this name: passes" in report
    assert "| train.C | - | 0.5 | added |" in report  # main has no mlcd.lock yet
    cases = junit_cases(root / "out/junit.xml")
    gate = cases[("mlcd.gates.clf.champion", RELATIVE_GATE)]
    assert gate.find("failure") is None
    assert "first model" in (gate.findtext("system-out") or "")
    assert cases[("mlcd.pipeline", "train")].findtext("system-out") == "ran"


@pytest.mark.slow
def test_candidate_worse_than_champion_fails_the_check_naming_the_gate(
    promoted_repo: tuple[Path, subprocess.CompletedProcess[str], Path], mlcd: Cli
) -> None:
    root, promoted, _ = promoted_repo  # a fresh repository after `mlcd ci --promote --json`
    assert promoted.returncode == 0, promoted.stderr
    assert ci_json(promoted)["models"][0]["promoted"] is True
    commit_all(root, "record mlcd.lock")  # the base now records params and metrics
    git(root, "checkout", "-q", "-b", "worse")
    set_params(root, **WORSE)
    commit_all(root, "drop two features")

    result = mlcd(
        root, "ci", "--base", "main", "--report", "report.md", "--junit", "junit.xml", "--json"
    )

    assert result.returncode == 1, result.stderr
    assert RELATIVE_GATE in result.stderr and "report.md" in result.stderr
    document = ci_json(result)
    assert document["verdict"] == "failed"
    (model,) = document["models"]
    assert (model["ref"], model["status"], model["champion"]) == ("clf/2", "failed", 1)
    report = (root / "report.md").read_text()
    assert report.startswith("## ❌ mlcd ci failed: clf/2 fails 1 of 2 gates of `champion`")
    assert f"❌ `{RELATIVE_GATE}`" in report
    assert "95% CI" in report  # metric deltas with bootstrap intervals
    assert "| train.features | ['x0', 'x1', 'x2', 'x3'] | ['x2', 'x3'] |" in report
    cases = junit_cases(root / "junit.xml")
    failure = cases[("mlcd.gates.clf.champion", RELATIVE_GATE)].find("failure")
    assert failure is not None and failure.get("type") == "GateFailed"
    assert cases[("mlcd.gates.clf.champion", "roc_auc >= 0.55")].find("failure") is None
    root_element = ET.parse(root / "junit.xml").getroot()
    assert root_element.get("failures") == "1"
    assert champion_version(root, mlcd) == 1


@pytest.mark.slow
def test_promote_moves_champion_only_when_the_gates_pass(
    promoted_repo: tuple[Path, subprocess.CompletedProcess[str], Path], mlcd: Cli
) -> None:
    root, first, report = promoted_repo  # after `mlcd ci --promote --report <file> --json`
    assert first.returncode == 0, first.stderr
    assert champion_version(root, mlcd) == 1
    assert "promoted to `champion`" in report.read_text()

    set_params(root, **WORSE)
    refused = mlcd(root, "ci", "--promote", "--junit", "junit.xml", "--json")
    assert refused.returncode == 1, refused.stderr
    (model,) = ci_json(refused)["models"]
    assert (model["version"], model["promoted"]) == (2, False)
    assert "gates of 'champion' failed" in model["promotion_note"]
    assert champion_version(root, mlcd) == 1
    skipped = junit_cases(root / "junit.xml")[("mlcd.promotion", "clf -> champion")]
    assert skipped.find("skipped") is not None

    set_params(root, features=["x0", "x1", "x2", "x3"], C=0.3)
    better = mlcd(root, "ci", "--promote", "--json")
    assert better.returncode == 0, better.stderr
    (model,) = ci_json(better)["models"]
    assert (model["version"], model["promoted"], model["champion"]) == (3, True, 1)
    assert champion_version(root, mlcd) == 3

    again = mlcd(root, "ci", "--promote", "--json")  # nothing changed: nothing to gate
    assert again.returncode == 0, again.stderr
    (model,) = ci_json(again)["models"]
    assert (model["status"], model["promoted"]) == ("unchanged", False)
    assert set(ci_json(again)["ran"]) == set()


@pytest.mark.slow
def test_second_ci_restores_stages_from_the_pulled_remote_cache(
    make_repo: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    first_clone = make_repo("a", extra_config=f"remotes:\n  shared:\n    url: {remote}\n")

    first = mlcd(first_clone, "ci", "--json")
    assert first.returncode == 0, first.stderr
    document = ci_json(first)
    assert document["ran"] == ["data", "train"]
    assert document["push"]["entries_copied"] == 2

    second_clone = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(first_clone), str(second_clone)], check=True)
    second = mlcd(second_clone, "ci", "--json", "--report", "report.md")

    assert second.returncode == 0, second.stderr
    document = ci_json(second)
    assert document["pull"]["entries_copied"] == 2
    assert document["ran"] == []
    assert document["restored"] == ["data", "train"]
    assert {s["outcome"] for s in document["stages"]} == {"cached"}
    assert document["models"][0]["status"] == "passed"
    report = (second_clone / "report.md").read_text()
    assert "0 ran, 2 restored from cache" in report
    assert "restored from the run cache" in report


def test_bad_base_ref_is_a_usage_error_before_any_work(
    make_repo: Callable[..., Path], mlcd: Cli
) -> None:
    root = make_repo()

    result = mlcd(root, "ci", "--base", "origin/nope", "--report", "report.md")

    assert result.returncode == 2
    assert "--base 'origin/nope' is not a git revision" in result.stderr
    assert "git fetch" in result.stderr
    assert not (root / "report.md").exists()
    assert not (root / "data" / "train.csv").exists()  # nothing ran


def test_base_outside_git_is_a_usage_error(make_repo: Callable[..., Path], mlcd: Cli) -> None:
    root = make_repo()
    subprocess.run(["rm", "-rf", str(root / ".git")], check=True)

    result = mlcd(root, "ci", "--base", "main")

    assert result.returncode == 2
    assert "not in a git repository" in result.stderr


def test_unknown_model_and_missing_eval_data_are_config_errors(
    make_repo: Callable[..., Path], mlcd: Cli
) -> None:
    root = make_repo()

    unknown = mlcd(root, "ci", "--model", "nope")
    assert unknown.returncode == 2
    assert "--model nope: not declared" in unknown.stderr and "declared: clf" in unknown.stderr

    config = root / "mlcd.yaml"
    config.write_text(config.read_text().replace("    eval_data: data/test.csv\n", ""))
    missing = mlcd(root, "ci")
    assert missing.returncode == 2
    assert "models.clf.eval_data is not set" in missing.stderr


def test_failing_stage_exits_3_with_the_stage_in_both_reports(
    make_repo: Callable[..., Path], mlcd: Cli
) -> None:
    root = make_repo()
    write(root, {"src/train.py": "raise SystemExit('the training data is empty')\n"})

    result = mlcd(root, "ci", "--report", "report.md", "--junit", "junit.xml", "--json")

    assert result.returncode == 3
    assert "stage(s) failed: train" in result.stderr
    document = ci_json(result)
    assert document["verdict"] == "failed" and document["models"] == []
    report = (root / "report.md").read_text()
    assert report.startswith("## ❌ mlcd ci failed: stage(s) `train` failed")
    assert "the training data is empty" in report  # the log tail
    cases = junit_cases(root / "junit.xml")
    failure = cases[("mlcd.pipeline", "train")].find("failure")
    assert failure is not None and "the training data is empty" in (failure.text or "")
    assert cases[("mlcd.pipeline", "data")].find("failure") is None


def test_model_path_that_no_stage_writes_is_reported_as_an_error(
    make_repo: Callable[..., Path], mlcd: Cli
) -> None:
    root = make_repo()
    config = root / "mlcd.yaml"
    config.write_text(config.read_text().replace("path: models/clf", "path: models/other"))

    result = mlcd(root, "ci", "--report", "report.md", "--junit", "junit.xml", "--json")

    assert result.returncode == 2
    assert "models.clf.path: models/other does not exist" in result.stderr
    document = ci_json(result)
    assert document["verdict"] == "error"
    assert document["models"][0]["error"]["type"] == "ConfigError"
    assert (root / "report.md").read_text().startswith("## ⚠️ mlcd ci could not finish")
    error = junit_cases(root / "junit.xml")[("mlcd.ci.clf", "register and evaluate")]
    assert error.find("error") is not None


def test_push_to_an_unwritable_remote_exits_3_after_writing_the_reports(
    make_repo: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "remote-file"
    not_a_folder.write_text("a file where the remote folder should be\n")
    root = make_repo(extra_config=f"remotes:\n  shared:\n    url: {not_a_folder}\n")

    result = mlcd(root, "ci", "--report", "report.md", "--junit", "junit.xml", "--json")

    assert result.returncode == 3
    assert f"pushing to the remote {not_a_folder} failed" in result.stderr
    document = ci_json(result)
    assert document["verdict"] == "error"
    assert [e["step"] for e in document["errors"]] == ["push"]
    assert document["models"][0]["status"] == "passed"  # the gates still ran and are reported
    assert (root / "report.md").read_text().startswith("## ⚠️ mlcd ci could not finish: push")
    error = junit_cases(root / "junit.xml")[("mlcd.ci", "push")].find("error")
    assert error is not None and error.get("type") == "ObjectError"
