"""``mlcd exp branch`` through the real CLI, in a real git repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mlcd.digest import Digest
from mlcd.project import Project
from mlcd.store import runs
from tests.experiments.conftest import CONFIG, FILES, calls, env_for, exp_json, git, tree
from tests.pipeline.conftest import Cli

IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def _stored(root: Path, run_id: str) -> dict[str, bytes]:
    """The experiment's stored files (lock, params) and outputs, by path, from the store."""
    with Project.open(root) as project:
        with project.store.read() as conn:
            refs = runs.artifacts_of(conn, run_id)
        return {
            r.path: project.objects.get_bytes(Digest.parse(r.digest))
            for r in refs
            if r.role in ("output", "metrics", "artifact")
        }


def _branch(mlcd: Cli, root: Path, *args: str) -> dict[str, str]:
    done = mlcd(root, "exp", "branch", *args, "--json", env=IDENTITY)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_exp_branch_commits_the_experiment_without_touching_the_work_tree(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    done = exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.7", "-n", "hot")
    (project / "notes.txt").write_text("an untracked file\n")  # the work tree as the user has it
    (project / "input.txt").write_text("edited, not staged\n")
    git(project, "add", "notes.txt")
    before = tree(project)
    status = git(project, "status", "--porcelain")
    head = git(project, "rev-parse", "HEAD").strip()
    index = (project / ".git" / "index").read_bytes()

    made = _branch(mlcd, project, "hot", "exp/hot")

    assert tree(project) == before
    assert git(project, "status", "--porcelain") == status
    assert (project / ".git" / "index").read_bytes() == index
    assert git(project, "rev-parse", "HEAD").strip() == head
    assert git(project, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert made["base"] == head and made["files"] == ["mlcd.lock", "params.yaml"]
    assert git(project, "rev-parse", "exp/hot").strip() == made["commit"]
    assert git(project, "rev-parse", "exp/hot^").strip() == head
    stored = _stored(project, done["run_id"])
    assert git(project, "show", "exp/hot:params.yaml") == stored[
        "mlcd.exp/params/params.yaml"
    ].decode("utf-8")
    assert git(project, "show", "exp/hot:mlcd.lock") == stored["mlcd.exp/mlcd.lock"].decode()
    changed = git(project, "diff", "--name-only", head, "exp/hot").split()
    assert changed == ["mlcd.lock", "params.yaml"]
    assert "mlcd experiment hot" in git(project, "log", "-1", "--format=%B", "exp/hot")

    # On the branch, 'mlcd run' restores the experiment's outputs from the run cache.
    git(project, "checkout", "-q", "--", "input.txt")
    git(project, "rm", "-q", "--cached", "notes.txt")
    git(project, "checkout", "-q", "exp/hot")
    rerun = mlcd(project, "run", "--json", env=env_for(tmp_path))
    assert rerun.returncode == 0, rerun.stderr
    outcomes = {s["stage"]: s["outcome"] for s in json.loads(rerun.stdout)["stages"]}
    assert outcomes == {"prepare": "skipped", "train": "cached"}  # prepare was up to date
    assert calls(tmp_path) == ["train"]  # the experiment's own run only: nothing ran again
    for path in ("model.txt", "prepared.txt", "metrics.json"):
        assert (project / path).read_bytes() == stored[path]
    assert (project / "model.txt").read_text() == "model lr=0.7 size=18\n"


def test_exp_branch_from_a_project_below_the_top_of_the_repository(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    root = make_project(CONFIG, FILES, name="repo/ml")
    (repo / "README").write_text("top\n")
    git(repo, "init", "-q", "-b", "main")
    assert mlcd(root, "run", env=env_for(tmp_path)).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    exp_json(mlcd, root, tmp_path, "run", "-S", "prepare.n=1", "-n", "one")

    made = _branch(mlcd, root, "one", "one")

    assert git(repo, "diff", "--name-only", "main", "one").split() == [
        "ml/mlcd.lock",
        "ml/params.yaml",
    ]
    assert "n: 1" in git(repo, "show", "one:ml/params.yaml")
    assert git(repo, "status", "--porcelain") == ""
    assert made["branch"] == "one"


def test_exp_branch_refuses_bad_input_and_changes_nothing(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.5", "-n", "five")
    branches = git(project, "branch", "--list")

    unknown = mlcd(project, "exp", "branch", "nope", "x", env=IDENTITY)
    assert unknown.returncode == 2
    assert "no experiment 'nope'" in unknown.stderr

    taken = mlcd(project, "exp", "branch", "five", "main", env=IDENTITY)
    assert taken.returncode == 2
    assert "a branch named 'main' exists already" in taken.stderr
    assert "git branch -D main" in taken.stderr

    invalid = mlcd(project, "exp", "branch", "five", "bad..name", env=IDENTITY)
    assert invalid.returncode == 2
    assert "not a valid git branch name" in invalid.stderr

    assert git(project, "branch", "--list") == branches
    assert git(project, "status", "--porcelain") == ""


def test_exp_branch_needs_the_base_commit(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    root = make_project(CONFIG, FILES)
    assert mlcd(root, "run", env=env_for(tmp_path)).returncode == 0
    exp_json(mlcd, root, tmp_path, "run", "-S", "train.lr=0.5", "-n", "nogit")
    git(root, "init", "-q", "-b", "main")

    refused = mlcd(root, "exp", "branch", "nogit", "b", env=IDENTITY)

    assert refused.returncode == 2
    assert "has no base commit" in refused.stderr
    assert "mlcd exp apply" in refused.stderr
