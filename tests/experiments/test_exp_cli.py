"""``mlcd exp run|show|apply|remove`` through the real CLI, in a git repository."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlcd.digest import Digest
from mlcd.project import Project
from mlcd.store import runs
from tests.experiments.conftest import CONFIG, FILES, calls, env_for, exp_json, git, tree
from tests.pipeline.conftest import Cli


def _tags(root: Path, run_id: str) -> dict[str, str | None]:
    with Project.open(root) as project, project.store.read() as conn:
        return runs.tags_of(conn, run_id)


def _outputs(root: Path, run_id: str) -> dict[str, bytes]:
    """The bytes of the outputs a run recorded, read from the object store."""
    with Project.open(root) as project:
        with project.store.read() as conn:
            refs = runs.artifacts_of(conn, run_id)
        return {
            r.path: project.objects.get_bytes(Digest.parse(r.digest))
            for r in refs
            if r.role in ("output", "metrics")
        }


def test_exp_run_leaves_work_tree_untouched_and_tags_the_run(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    before = tree(project)

    done = exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.5", "-n", "fast")

    assert done["ok"] and done["name"] == "fast"
    assert tree(project) == before
    assert git(project, "status", "--porcelain") == ""
    assert not any((project / ".mlcd" / "exp").iterdir())  # the workspace is gone
    tags = _tags(project, done["run_id"])
    assert tags["mlcd.exp"] == "1"
    assert tags["mlcd.exp.name"] == "fast"
    assert tags["mlcd.exp.base"] == git(project, "rev-parse", "HEAD").strip()
    assert tags["mlcd.exp.overrides"] == '{"train.lr": 0.5}'
    assert _outputs(project, done["run_id"])["model.txt"] == b"model lr=0.5 size=18\n"


def test_exp_run_restores_unchanged_stages_from_the_run_cache(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    done = exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.2")

    assert calls(tmp_path) == ["train"]  # prepare's inputs did not change: restored
    assert {s["stage"]: s["outcome"] for s in done["stages"]} == {
        "prepare": "cached",
        "train": "ran",
    }


def test_exp_run_keep_leaves_the_workspace(project: Path, mlcd: Cli, tmp_path: Path) -> None:
    done = exp_json(mlcd, project, tmp_path, "run", "-S", "prepare.n=2", "--keep")

    workspace = Path(done["workspace"])
    assert calls(tmp_path) == ["prepare", "train"]
    assert "n: 2" in (workspace / "params.yaml").read_text()
    assert (workspace / "prepared.txt").read_text() == "hello\n" * 2
    assert git(project, "status", "--porcelain") == ""


def test_exp_show_lists_experiments_with_params_and_metrics(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    first = exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.5", "-n", "a")
    second = exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.3", "-n", "b")

    shown = exp_json(mlcd, project, tmp_path, "show")

    assert [e["name"] for e in shown["experiments"]] == ["b", "a"]  # newest first
    assert [e["id"] for e in shown["experiments"]] == [second["run_id"], first["run_id"]]
    a = shown["experiments"][1]
    assert a["overrides"] == {"train.lr": 0.5}
    assert a["params"] == {"train.lr": "0.5"}
    assert a["metrics"]["score"] == 5.0
    assert a["status"] == "finished"
    assert shown["baseline"]["params"] == {"train.lr": 0.1}
    assert shown["baseline"]["metrics"]["score"] == 1.0
    by_score = exp_json(mlcd, project, tmp_path, "show", "--sort-by", "metrics.score")
    assert [e["name"] for e in by_score["experiments"]] == ["a", "b"]
    pretty = mlcd(project, "exp", "show", env={"COLUMNS": "200"})  # no truncated cells
    assert pretty.returncode == 0, pretty.stderr
    assert "workspace (baseline)" in pretty.stdout and "finished" in pretty.stdout
    markdown = mlcd(project, "exp", "show", "--md")
    assert markdown.stdout.startswith("| name | id | created | status | params.train.lr |")
    table = mlcd(project, "exp", "show", "--csv")
    assert table.returncode == 0, table.stderr
    assert (
        table.stdout.splitlines()[0]
        == "name,id,created,status,params.train.lr,metrics.score,metrics.size"
    )


def test_exp_apply_reproduces_outputs_byte_for_byte(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    done = exp_json(mlcd, project, tmp_path, "run", "-S", "prepare.n=2", "-S", "train.lr=0.7")
    recorded = _outputs(project, done["run_id"])

    applied = exp_json(mlcd, project, tmp_path, "apply", done["name"])

    assert applied["params_files"] == ["params.yaml"]
    assert sorted(applied["restored"]) == ["metrics.json", "model.txt", "prepared.txt"]
    for path, data in recorded.items():
        assert (project / path).read_bytes() == data
    assert (project / "model.txt").read_text() == "model lr=0.7 size=12\n"
    status = mlcd(project, "status", "--check")
    assert status.returncode == 0, status.stdout + status.stderr
    rerun = mlcd(project, "run", "--json", env=env_for(tmp_path))
    assert rerun.returncode == 0, rerun.stderr
    assert calls(tmp_path) == ["prepare", "train"]  # only the experiment's own run


def test_exp_apply_refuses_uncommitted_params_changes(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    done = exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.5")
    (project / "params.yaml").write_text("prepare:\n  n: 3\ntrain:\n  lr: 0.9\n")
    before = tree(project)

    refused = mlcd(project, "exp", "apply", done["name"])

    assert refused.returncode == 2
    assert "uncommitted changes: params.yaml" in refused.stderr
    assert tree(project) == before
    forced = mlcd(project, "exp", "apply", done["name"], "--force")
    assert forced.returncode == 0, forced.stderr
    assert "lr: 0.5" in (project / "params.yaml").read_text()


def test_exp_run_without_equals_is_a_usage_error(project: Path, mlcd: Cli, tmp_path: Path) -> None:
    before = tree(project)

    result = mlcd(project, "exp", "run", "-S", "train.lr", env=env_for(tmp_path))

    assert result.returncode == 2
    assert "expected [FILE:]KEY=VALUE" in result.stderr
    assert tree(project) == before
    assert calls(tmp_path) == []
    assert exp_json(mlcd, project, tmp_path, "show")["experiments"] == []


def test_exp_apply_unknown_experiment_is_a_usage_error(project: Path, mlcd: Cli) -> None:
    before = tree(project)

    result = mlcd(project, "exp", "apply", "nope")

    assert result.returncode == 2
    assert "no experiment 'nope'" in result.stderr
    assert tree(project) == before


def test_exp_remove_forgets_the_experiment(project: Path, mlcd: Cli, tmp_path: Path) -> None:
    exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.5", "-n", "gone")

    removed = exp_json(mlcd, project, tmp_path, "remove", "gone")

    assert [r["name"] for r in removed] == ["gone"]
    assert exp_json(mlcd, project, tmp_path, "show")["experiments"] == []
    assert mlcd(project, "exp", "remove", "gone").returncode == 2


def test_exp_run_with_a_taken_name_is_a_usage_error(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    exp_json(mlcd, project, tmp_path, "run", "-S", "train.lr=0.5", "-n", "twice")

    again = mlcd(project, "exp", "run", "-S", "train.lr=0.6", "-n", "twice", env=env_for(tmp_path))

    assert again.returncode == 2
    assert "an experiment named 'twice' exists already" in again.stderr
    assert calls(tmp_path) == ["train"]


def test_exp_run_with_a_failing_stage_exits_3_and_records_it(
    project: Path, mlcd: Cli, tmp_path: Path
) -> None:
    before = tree(project)

    failed = mlcd(project, "exp", "run", "-S", "train.lr=null", "-n", "bad", env=env_for(tmp_path))

    assert failed.returncode == 3
    assert "stage(s) failed: train" in failed.stderr
    assert tree(project) == before
    assert not any((project / ".mlcd" / "exp").iterdir())
    shown = exp_json(mlcd, project, tmp_path, "show")
    assert [(e["name"], e["status"]) for e in shown["experiments"]] == [("bad", "failed")]


def test_exp_run_outside_git_copies_the_project_and_has_no_base(
    make_project: Callable[..., Path], mlcd: Cli, tmp_path: Path
) -> None:
    root = make_project(CONFIG, FILES, name="plain")
    before = tree(root)

    done = exp_json(mlcd, root, tmp_path, "run", "-S", "train.lr=0.4")

    assert done["ok"] and done["base"] is None
    assert calls(tmp_path) == ["prepare", "train"]
    assert tree(root) == before  # no outputs, no mlcd.lock appear in the work tree
    assert _tags(root, done["run_id"])["mlcd.exp.base"] == ""
    assert _outputs(root, done["run_id"])["model.txt"] == b"model lr=0.4 size=18\n"
