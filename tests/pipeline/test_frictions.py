"""Frictions of issue 19: config validate runs run's checks, --force/--force-upstream/--single."""

from __future__ import annotations

import json
import shutil

from tests.pipeline.conftest import CHAIN, CHAIN_FILES, calls, outcomes, run_json

# The layout of iterative/example-get-started: evaluate writes eval/ and eval/metrics.json.
OWN_METRICS = """
stages:
  train:
    cmd: echo model > model.pkl && echo train >> calls.log
    deps: [input.txt]
    outs: [model.pkl]
  evaluate:
    cmd: >-
      mkdir -p eval/plots && echo '{"auc": 0.9}' > eval/metrics.json &&
      printf 'step,loss\\n0,1.0\\n1,0.5\\n' > eval/plots/loss.csv && echo evaluate >> calls.log
    deps: [model.pkl]
    outs: [eval]
    metrics: [eval/metrics.json]
    plots: [eval/plots/loss.csv]
"""


def test_metrics_inside_own_out_folder_validates_runs_and_restores(make_project, mlcd) -> None:
    root = make_project(OWN_METRICS, {"input.txt": "x\n"})

    validated = mlcd(root, "config", "validate")
    dry = mlcd(root, "run", "--dry-run")
    document = run_json(mlcd, root)

    assert validated.returncode == 0, validated.stderr
    assert dry.returncode == 0, dry.stderr
    assert outcomes(document) == {"train": "ran", "evaluate": "ran"}
    lock = (root / "mlcd.lock").read_text()
    assert "eval/metrics.json" in lock
    assert (
        json.loads(mlcd(root, "runs", "show", document["run_id"], "--json").stdout)["metrics"][
            "auc"
        ]["value"]
        == 0.9
    )

    shutil.rmtree(root / "eval")
    restored = run_json(mlcd, root)

    assert outcomes(restored)["evaluate"] == "cached"
    assert json.loads((root / "eval" / "metrics.json").read_text()) == {"auc": 0.9}
    assert (root / "eval" / "plots" / "loss.csv").read_text().startswith("step,loss")
    assert calls(root) == ["train", "evaluate"]
    assert mlcd(root, "status", "--check").returncode == 0


def test_config_validate_reports_what_run_refuses(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          one:
            cmd: mkdir -p data && echo 1 > data/x
            outs: [data]
          two:
            cmd: echo 2 > data/y.txt
            outs: [data/y.txt]
          three:
            cmd: cat missing.txt
            deps: [missing.txt]
        """
    )

    validated = mlcd(root, "config", "validate")
    ran = mlcd(root, "run", "--dry-run")

    assert validated.returncode == 2
    assert "'data/y.txt' (stage 'two') is inside 'data' (stage 'one')" in validated.stderr
    assert ran.returncode == 2
    assert "'data/y.txt' (stage 'two') is inside 'data' (stage 'one')" in ran.stderr


def test_config_validate_reports_a_missing_dep_and_param(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          one:
            cmd: cat missing.txt
            deps: [missing.txt]
        """
    )
    param = make_project(
        """
        stages:
          one:
            cmd: echo 1 > one.txt
            params: [nope.lr]
            outs: [one.txt]
        """,
        {"params.yaml": "lr: 1\n"},
        name="param",
    )

    missing = mlcd(root, "config", "validate")
    no_param = mlcd(param, "config", "validate")

    assert missing.returncode == 2
    assert "needs 'missing.txt', which does not exist" in missing.stderr
    assert no_param.returncode == 2
    assert "nope.lr" in no_param.stderr


def test_force_forces_named_stage_only(ran_chain, mlcd) -> None:
    root = ran_chain()

    document = run_json(mlcd, root, "c", "--force")

    assert outcomes(document) == {"a": "skipped", "b": "skipped", "c": "ran"}
    log = calls(root)  # a and b are independent: the first run may start either first
    assert sorted(log[:2]) == ["a", "b"] and log[2:] == ["c", "c"]


def test_force_still_runs_stale_upstream(ran_chain, mlcd) -> None:
    root = ran_chain()
    (root / "input.txt").write_text("changed\n")

    document = run_json(mlcd, root, "c", "--force")

    assert outcomes(document) == {"a": "ran", "b": "skipped", "c": "ran"}


def test_force_upstream_forces_every_selected_stage(ran_chain, mlcd) -> None:
    root = ran_chain()

    document = run_json(mlcd, root, "c", "--force-upstream")
    dry = json.loads(mlcd(root, "run", "c", "--force-upstream", "--dry-run", "--json").stdout)

    assert outcomes(document) == {"a": "ran", "b": "ran", "c": "ran"}
    assert {s["outcome"] for s in dry["stages"]} == {"run"}


def test_force_without_targets_forces_all(ran_chain, mlcd) -> None:
    root = ran_chain()

    document = run_json(mlcd, root, "--force")

    assert outcomes(document) == {"a": "ran", "b": "ran", "c": "ran"}


def test_single_runs_one_stage_without_upstream(ran_chain, mlcd) -> None:
    root = ran_chain()
    (root / "input.txt").write_text("changed\n")
    (root / "a.txt").write_text("hand made\n")

    document = run_json(mlcd, root, "c", "--single")

    assert outcomes(document) == {"c": "ran"}
    assert (root / "c.txt").read_text().startswith("hand made")
    log = calls(root)  # a and b are independent: the first run may start either first
    assert sorted(log[:2]) == ["a", "b"] and log[2:] == ["c", "c"]


def test_single_fails_clearly_when_deps_are_missing(make_project, mlcd) -> None:
    root = make_project(CHAIN, CHAIN_FILES)

    result = mlcd(root, "run", "-s", "c")

    assert result.returncode == 2
    assert "stage 'c' needs 'a.txt'" in result.stderr
    assert "without --single" in result.stderr
    assert calls(root) == []


def test_plots_show_draws_declared_series_and_images(make_project, mlcd) -> None:
    import base64

    root = make_project(OWN_METRICS, {"input.txt": "x\n"})
    run_json(mlcd, root)
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    (root / "eval" / "plots" / "roc.png").write_bytes(png)
    text = (root / "mlcd.yaml").read_text()
    (root / "mlcd.yaml").write_text(
        text.replace(
            "plots: [eval/plots/loss.csv]", "plots: [eval/plots/loss.csv, eval/plots/roc.png]"
        )
    )

    inline = mlcd(root, "plots", "show", "-o", "out/plots.html")
    shared = mlcd(root, "plots", "show", "-o", "shared/plots.html", "--plotly", "directory")

    assert inline.returncode == 0, inline.stderr
    page = (root / "out" / "plots.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert '"x":["0","1"]' in page.replace(" ", "") and '"y":[1.0,0.5]' in page.replace(" ", "")
    assert "data:image/png;base64," in page
    assert len(page) > 1_000_000  # plotly.js inside
    assert shared.returncode == 0, shared.stderr
    small = (root / "shared" / "plots.html").read_text()
    assert 'src="plotly.min.js"' in small and len(small) < 100_000
    assert (root / "shared" / "plotly.min.js").stat().st_size > 1_000_000


def test_plots_show_run_vs_run_draws_both_series(make_project, mlcd) -> None:
    root = make_project(OWN_METRICS, {"input.txt": "x\n"})
    first = run_json(mlcd, root)["run_id"]
    (root / "mlcd.yaml").write_text(
        (root / "mlcd.yaml").read_text().replace("0,1.0\\n1,0.5", "0,2.0\\n1,0.25")
    )
    second = run_json(mlcd, root)["run_id"]

    shown = mlcd(root, "plots", "show", "--run", first, "--vs", second, "-o", "diff.html")

    assert shown.returncode == 0, shown.stderr
    page = (root / "diff.html").read_text().replace(" ", "")
    assert '"y":[1.0,0.5]' in page and '"y":[2.0,0.25]' in page
    assert f"{first[:8]}:loss" in page and f"{second[:8]}:loss" in page


def test_runs_compare_html_draws_each_runs_declared_plots(make_project, mlcd) -> None:
    # guards against declared plots being stored but never drawn by `mlcd runs compare` (issue 19)
    root = make_project(OWN_METRICS, {"input.txt": "x\n"})
    first = run_json(mlcd, root)["run_id"]
    (root / "mlcd.yaml").write_text(
        (root / "mlcd.yaml").read_text().replace("0,1.0\\n1,0.5", "0,2.0\\n1,0.25")
    )
    second = run_json(mlcd, root)["run_id"]

    shown = mlcd(
        root, "runs", "compare", first, second, "--html", "cmp/page.html", "--plotly", "directory"
    )

    assert shown.returncode == 0, shown.stderr
    page = (root / "cmp" / "page.html").read_text()
    assert "<h2>Plots</h2>" in page and 'src="plotly.min.js"' in page
    flat = page.replace(" ", "")
    assert '"y":[1.0,0.5]' in flat and '"y":[2.0,0.25]' in flat
    assert (root / "cmp" / "plotly.min.js").is_file() and len(page) < 1_000_000
