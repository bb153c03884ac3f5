"""`mlcd run` and `mlcd status` end to end: what runs, what is restored, what is reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.pipeline.conftest import CHAIN, CHAIN_FILES, calls, outcomes, run_json, write


def test_first_run_executes_every_stage_and_writes_the_lock(make_project, mlcd) -> None:
    root = make_project(CHAIN, CHAIN_FILES)

    document = run_json(mlcd, root)

    assert outcomes(document) == {"a": "ran", "b": "ran", "c": "ran"}
    assert sorted(calls(root)) == ["a", "b", "c"]
    assert calls(root)[-1] == "c"  # c waits for a and b
    lock = yaml.safe_load((root / "mlcd.lock").read_text())
    assert list(lock["stages"]) == ["a", "b", "c"]
    assert lock["stages"]["a"]["params"] == {"params.yaml": {"a": 1}}
    assert lock["stages"]["b"]["params"] == {"params.yaml": {"b.size": 10}}
    assert lock["stages"]["b"]["metrics"] == {"metrics_b.json": {"score": 0.5}}
    assert lock["stages"]["b"]["outs"]["out_b"].endswith(".dir")
    assert set(lock["stages"]["b"]["outs"]) == {"out_b", "metrics_b.json"}
    assert (root / "c.txt").read_text() == "a=hello\n  size: 10\n"


def test_no_op_rerun_executes_nothing_and_records_no_run(ran_chain, mlcd) -> None:
    root = ran_chain()
    before = calls(root)

    document = run_json(mlcd, root)

    assert outcomes(document) == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert document["run_id"] is None
    assert calls(root) == before
    status = mlcd(root, "status", "--json")
    assert json.loads(status.stdout)["up_to_date"] is True


def test_changed_param_reruns_exactly_the_stages_declaring_it_and_their_dependents(
    ran_chain, mlcd
) -> None:
    root = ran_chain()
    (root / "calls.log").unlink()

    write(root, {"params.yaml": "a: 1\nb:\n  size: 11\n  unused: 3\n"})
    status = json.loads(mlcd(root, "status", "--json").stdout)
    document = run_json(mlcd, root)

    by_stage = {s["stage"]: s for s in status["stages"]}
    assert by_stage["b"]["status"] == "stale"
    assert by_stage["b"]["reasons"][0]["message"] == "param changed: b.size (10 -> 11)"
    assert by_stage["a"]["status"] == "up to date"
    assert by_stage["c"]["status"] == "upstream"
    assert outcomes(document) == {"a": "skipped", "b": "ran", "c": "ran"}
    assert calls(root) == ["b", "c"]


def test_dependent_is_skipped_when_the_rerun_upstream_writes_the_same_outputs(
    ran_chain, mlcd
) -> None:
    root = ran_chain()
    (root / "calls.log").unlink()

    # without its newline input.txt is a changed dep of a, but $(cat) writes the same a.txt
    (root / "input.txt").write_text("hello")
    document = run_json(mlcd, root)

    assert outcomes(document) == {"a": "ran", "b": "skipped", "c": "skipped"}
    assert calls(root) == ["a"]


def test_param_outside_the_declared_keys_changes_nothing(ran_chain, mlcd) -> None:
    root = ran_chain()

    write(root, {"params.yaml": "a: 1\nb:\n  size: 10\n  unused: 4\n"})
    document = run_json(mlcd, root)

    assert set(outcomes(document).values()) == {"skipped"}


def test_deleted_out_is_restored_from_cache_without_running_the_stage(ran_chain, mlcd) -> None:
    root = ran_chain()
    before = calls(root)
    shutil.rmtree(root / "out_b")
    (root / "metrics_b.json").unlink()

    status = json.loads(mlcd(root, "status", "--json").stdout)
    document = run_json(mlcd, root)

    reasons = {r["message"] for s in status["stages"] for r in s["reasons"]}
    assert "out missing: out_b" in reasons
    assert outcomes(document) == {"a": "skipped", "b": "cached", "c": "skipped"}
    assert calls(root) == before
    assert (root / "out_b" / "b.txt").read_text() == "  size: 10\n"
    assert json.loads((root / "metrics_b.json").read_text()) == {"score": 0.5}


def test_reverting_a_change_restores_the_earlier_results_from_cache(ran_chain, mlcd) -> None:
    root = ran_chain()
    write(root, {"input.txt": "changed\n"})
    run_json(mlcd, root)
    (root / "calls.log").unlink()

    write(root, {"input.txt": "hello\n"})
    document = run_json(mlcd, root)

    assert outcomes(document) == {"a": "cached", "b": "skipped", "c": "cached"}
    assert calls(root) == []
    assert (root / "c.txt").read_text() == "a=hello\n  size: 10\n"


def test_out_edited_by_hand_is_reported_by_status_and_fixed_by_run(ran_chain, mlcd) -> None:
    root = ran_chain()
    (root / "a.txt").write_text("edited by hand\n")

    status = mlcd(root, "status")
    check = mlcd(root, "status", "--check")
    document = run_json(mlcd, root)

    assert status.returncode == 0
    assert "a: stale" in status.stdout
    assert "out modified: a.txt" in status.stdout
    assert check.returncode == 1
    assert outcomes(document)["a"] == "cached"
    assert (root / "a.txt").read_text() == "a=hello\n"


def test_failing_stage_blocks_only_its_dependents(make_project, mlcd) -> None:
    config = CHAIN.replace(
        'echo "a=$(cat input.txt)" > a.txt && echo a >> calls.log',
        "echo a >> calls.log && echo 'something broke in a' >&2 && exit 7",
    )
    root = make_project(config, CHAIN_FILES)

    result = mlcd(root, "run", "--json")

    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert outcomes(document) == {"a": "failed", "b": "ran", "c": "blocked"}
    failed = next(s for s in document["stages"] if s["stage"] == "a")
    assert failed["error"] == "command exited with code 7"
    assert "c" not in calls(root)
    lock = yaml.safe_load((root / "mlcd.lock").read_text())
    assert set(lock["stages"]) == {"b"}  # nothing of the failed stage is recorded
    assert "stage(s) failed: a" in result.stderr


def test_failure_output_shows_the_tail_of_the_stage_log(make_project, mlcd) -> None:
    config = CHAIN.replace(
        'echo "a=$(cat input.txt)" > a.txt && echo a >> calls.log',
        "echo 'something broke in a' >&2; exit 7",
    )
    root = make_project(config, CHAIN_FILES)

    result = mlcd(root, "run")

    assert result.returncode == 3
    assert "stage 'a' failed: command exited with code 7" in result.stderr
    assert "something broke in a" in result.stderr
    assert "hint: read the log (.mlcd/logs/" in result.stderr


def test_failed_stage_is_not_cached_and_runs_again(make_project, mlcd) -> None:
    config = CHAIN.replace(
        'echo "a=$(cat input.txt)" > a.txt && echo a >> calls.log',
        'echo a >> calls.log && test -f ok.flag && echo "a" > a.txt',
    )
    root = make_project(config, CHAIN_FILES)
    assert mlcd(root, "run").returncode == 3

    (root / "ok.flag").write_text("")
    document = run_json(mlcd, root)

    assert outcomes(document) == {"a": "ran", "b": "skipped", "c": "ran"}


def test_stage_that_does_not_write_its_out_fails(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          a:
            cmd: echo a >> calls.log
            outs: [never.txt]
        """
    )

    result = mlcd(root, "run", "--json")

    assert result.returncode == 3
    stage = json.loads(result.stdout)["stages"][0]
    assert stage["error"] == "the command succeeded but did not write never.txt"


def test_cycle_is_rejected_with_the_stage_names_before_anything_runs(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          one:
            cmd: echo one >> calls.log; cp c.txt a.txt
            deps: [c.txt]
            outs: [a.txt]
          two:
            cmd: echo two >> calls.log; cp a.txt b.txt
            deps: [a.txt]
            outs: [b.txt]
          three:
            cmd: echo three >> calls.log; cp b.txt c.txt
            deps: [b.txt]
            outs: [c.txt]
        """
    )

    for command in ("run", "status"):
        result = mlcd(root, command)
        assert result.returncode == 2
        assert "the pipeline has a cycle: one -> two -> three -> one" in result.stderr
    assert calls(root) == []


def test_two_stages_writing_the_same_out_are_rejected(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          first:
            cmd: echo 1 > same.txt
            outs: [same.txt]
          second:
            cmd: echo 2 > same.txt
            outs: [same.txt]
        """
    )

    result = mlcd(root, "run")

    assert result.returncode == 2
    assert "'same.txt' is written by both 'first' and 'second'" in result.stderr


def test_missing_dep_that_no_stage_produces_is_rejected(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          a:
            cmd: cp nowhere.csv a.txt
            deps: [nowhere.csv]
            outs: [a.txt]
        """
    )

    result = mlcd(root, "run")

    assert result.returncode == 2
    assert "stage 'a' needs 'nowhere.csv', which does not exist" in result.stderr


def test_out_outside_the_project_is_rejected(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          a:
            cmd: echo x > ../escape.txt
            outs: [../escape.txt]
        """
    )

    result = mlcd(root, "status")

    assert result.returncode == 2
    assert "stage 'a': out '../escape.txt' is outside the project" in result.stderr
    assert not (root.parent / "escape.txt").exists()


def test_undeclared_param_key_is_a_config_error(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          a:
            cmd: echo a > a.txt
            params: [train.lr]
            outs: [a.txt]
        """,
        {"params.yaml": "train:\n  epochs: 3\n"},
    )

    result = mlcd(root, "run")

    assert result.returncode == 2
    assert "stage 'a' declares param 'train.lr', but params.yaml has no such key" in result.stderr


def test_unknown_target_is_a_usage_error(make_project, mlcd) -> None:
    root = make_project(CHAIN, CHAIN_FILES)

    result = mlcd(root, "run", "nope")

    assert result.returncode == 2
    assert "no stage named 'nope'" in result.stderr


def test_target_runs_with_its_upstream_only(make_project, mlcd) -> None:
    root = make_project(CHAIN, CHAIN_FILES)

    document = run_json(mlcd, root, "a")

    assert outcomes(document) == {"a": "ran"}
    assert calls(root) == ["a"]


def test_force_runs_up_to_date_stages(ran_chain, mlcd) -> None:
    root = ran_chain()

    document = run_json(mlcd, root, "--force", "b")

    assert outcomes(document) == {"b": "ran"}
    assert calls(root).count("b") == 2


def test_always_run_stage_runs_every_time(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          clock:
            cmd: date +%s%N > now.txt && echo clock >> calls.log
            outs: [now.txt]
            always_run: true
        """
    )
    run_json(mlcd, root)

    document = run_json(mlcd, root)

    assert outcomes(document) == {"clock": "ran"}
    assert calls(root) == ["clock", "clock"]


def test_dry_run_says_what_would_happen_and_does_nothing(ran_chain, mlcd) -> None:
    root = ran_chain()
    (root / "a.txt").unlink()
    write(root, {"params.yaml": "a: 1\nb:\n  size: 12\n"})
    before = calls(root)

    document = run_json(mlcd, root, "--dry-run")

    assert document["dry_run"] is True
    assert outcomes(document) == {"a": "restore", "b": "run", "c": "maybe"}
    assert calls(root) == before
    assert not (root / "a.txt").exists()


def test_env_is_part_of_the_fingerprint_and_stage_variables_are_set(make_project, mlcd) -> None:
    config = """
        stages:
          show:
            cmd: env | grep -E '^(MLCD_[A-Z_]+|GREETING)=' | sort > env.txt
            env: {GREETING: hello}
            outs: [env.txt]
        """
    root = make_project(config)
    first = run_json(mlcd, root)
    seen = dict(line.split("=", 1) for line in (root / "env.txt").read_text().splitlines())

    assert seen["GREETING"] == "hello"
    assert seen["MLCD_RUN_ID"] == first["run_id"]
    assert seen["MLCD_STAGE"] == "show"
    assert seen["MLCD_PROJECT"] == str(root)
    assert seen["MLCD_STORE"] == f"sqlite:///{root / '.mlcd' / 'mlcd.db'}"
    assert seen["MLCD_ARTIFACTS"] == str(root / ".mlcd" / "objects")

    write(root, {"mlcd.yaml": config.replace("hello", "bonjour")})
    second = run_json(mlcd, root)
    assert outcomes(second) == {"show": "ran"}


def test_status_explains_changed_command_and_dep(ran_chain, mlcd) -> None:
    root = ran_chain()
    write(
        root,
        {
            "input.txt": "other\n",
            "mlcd.yaml": CHAIN.replace("cat a.txt out_b", "cat out_b/b.txt a.txt"),
        },
    )

    status = mlcd(root, "status")

    assert status.returncode == 0
    assert "dep changed: input.txt" in status.stdout
    assert "command changed: 'cat a.txt out_b/b.txt > c.txt" in status.stdout


def test_stage_removed_from_mlcd_yaml_leaves_the_lock(ran_chain, mlcd) -> None:
    root = ran_chain()
    shortened = CHAIN[: CHAIN.index("  c:")]

    write(root, {"mlcd.yaml": shortened, "input.txt": "again\n"})
    run_json(mlcd, root)

    lock = yaml.safe_load((root / "mlcd.lock").read_text())
    assert set(lock["stages"]) == {"a", "b"}


def test_corrupt_lock_file_is_reported_with_a_fix(ran_chain, mlcd) -> None:
    root = ran_chain()
    (root / "mlcd.lock").write_text("<<<<<<< HEAD\nschema: 1\n=======\n")

    result = mlcd(root, "status")

    assert result.returncode == 3
    assert "mlcd.lock is not a valid lock file" in result.stderr
    assert "delete it: 'mlcd run' rebuilds it" in result.stderr


def test_deleted_lock_is_rebuilt_from_the_run_cache_without_running(ran_chain, mlcd) -> None:
    root = ran_chain()
    before = calls(root)
    (root / "mlcd.lock").unlink()

    document = run_json(mlcd, root)

    assert set(outcomes(document).values()) == {"cached"}
    assert calls(root) == before
    assert set(yaml.safe_load((root / "mlcd.lock").read_text())["stages"]) == {"a", "b", "c"}


def test_dag_formats(make_project, mlcd) -> None:
    root = make_project(CHAIN, CHAIN_FILES)

    text = mlcd(root, "dag")
    mermaid = mlcd(root, "dag", "--format", "mermaid")
    as_json = json.loads(mlcd(root, "dag", "--format", "json").stdout)
    bad = mlcd(root, "dag", "--format", "png")

    assert text.stdout.splitlines() == ["a", "b", "c  <- a, b"]
    assert "s0 --> s2" in mermaid.stdout and "s1 --> s2" in mermaid.stdout
    assert as_json["edges"] == [["a", "c"], ["b", "c"]]
    assert bad.returncode == 2
    assert "unknown format 'png'" in bad.stderr


def test_outs_are_git_ignored_in_a_git_project(make_project, mlcd) -> None:
    import subprocess

    root = make_project(CHAIN, CHAIN_FILES)
    subprocess.run(["git", "init", "-q", str(root)], check=True)

    run_json(mlcd, root)

    assert (root / ".gitignore").read_text().splitlines() == ["/a.txt", "/out_b", "/c.txt"]


def test_status_outside_a_project_says_how_to_start_one(tmp_path: Path, mlcd) -> None:
    result = mlcd(tmp_path, "status")

    assert result.returncode == 2
    assert "no mlcd.yaml found" in result.stderr
    assert "mlcd init" in result.stderr


def test_unknown_executor_is_a_config_error_and_records_nothing(make_project, mlcd) -> None:
    root = make_project(CHAIN, CHAIN_FILES)

    result = mlcd(root, "run", "--executor", "kubernetes")

    assert result.returncode == 2
    assert "unknown executor 'kubernetes'" in result.stderr
    assert calls(root) == []
    assert not (root / "mlcd.lock").exists()
