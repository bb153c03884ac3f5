"""Frictions of issue 19 in tracking: how ``mlcd diff`` words a change."""

from __future__ import annotations

import pytest

from mlcd.tracking.diff import DiffRow, format_change


@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        (0.9763, 0.9763 + 1.36699e-05, "+1.37e-05 (+0.0014%)"),
        (0.80, 0.81, "+0.01 (+1.3%)"),
        (100, 250, "+150 (+150.0%)"),
        (0.5, 0.25, "-0.25 (-50.0%)"),
        (0.0, 0.3, "+0.3"),
    ],
)
def test_diff_change_keeps_significant_digits(old: float, new: float, shown: str) -> None:
    assert format_change(DiffRow("metric", "auc", old, new)) == shown


def test_start_run_without_project_uses_a_local_store(tmp_path) -> None:
    import subprocess
    import sys

    script = (
        "import mlcd\n"
        "for i in range(2):\n"
        "    with mlcd.start_run(name='nb') as run:\n"
        "        mlcd.log_metric('loss', 0.5 - i / 10)\n"
        "    print(run.id)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MLCD_")}

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr.count("no mlcd.yaml") == 1
    assert (tmp_path / ".mlcd" / "mlcd.db").is_file()
    run_ids = done.stdout.split()
    from mlcd.store import Store, runs

    store = Store(f"sqlite:///{tmp_path / '.mlcd' / 'mlcd.db'}")
    try:
        with store.read() as conn:
            found = [runs.get_run(conn, run_id) for run_id in run_ids]
    finally:
        store.dispose()
    assert [r is not None for r in found] == [True, True]


def test_the_cli_lists_and_compares_runs_of_the_local_store(tmp_path) -> None:
    # guards against notebook runs (no mlcd.yaml) being unreachable from `mlcd runs`
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import run_cli

    script = (
        "import mlcd\n"
        "for lr in (0.1, 0.2):\n"
        "    with mlcd.start_run(name=f'lr{lr}'):\n"
        "        mlcd.log_param('lr', lr)\n"
        "        mlcd.log_metric('auc', 0.8 + lr / 10)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
    made = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr

    listed = run_cli(["runs", "list", "--json"], tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    names = sorted(r["name"] for r in json.loads(listed.stdout))
    assert names == ["lr0.1", "lr0.2"]
    compared = run_cli(["runs", "compare", "lr0.1", "lr0.2", "--json"], tmp_path, env=env)
    assert compared.returncode == 0, compared.stderr
    rows = {(r["kind"], r["key"]): r["values"] for r in json.loads(compared.stdout)["rows"]}
    assert rows[("metric", "auc")] == pytest.approx([0.81, 0.82])
    elsewhere = run_cli(["runs", "list"], tmp_path / ".mlcd", env=env)
    assert elsewhere.returncode == 2 and "no mlcd.yaml" in elsewhere.stderr


def test_tables_are_not_cut_at_80_columns_when_piped(project) -> None:
    import os
    import subprocess
    import sys

    value = "a-long-parameter-value-" * 6
    script = (
        "import mlcd\n"
        "with mlcd.start_run(name='wide') as run:\n"
        f"    mlcd.log_param('preprocessing_pipeline_description', {value!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    subprocess.run([sys.executable, "-c", script], cwd=project, env=env, check=True)

    # run_cli would merge os.environ back (xdist workers may carry COLUMNS): call it directly
    shown = subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", "runs", "show", "wide"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    assert value in shown.stdout


def test_runs_compare_html_charts_scalar_metrics(project, tmp_path) -> None:
    import subprocess
    import sys

    from tests.conftest import run_cli

    script = (
        "import mlcd\n"
        "for name, lr, auc in (('one', 0.1, 0.81), ('two', 0.2, 0.87)):\n"
        "    with mlcd.start_run(name=name):\n"
        "        mlcd.log_param('lr', lr)\n"
        "        mlcd.log_metric('auc', auc)\n"
        "        mlcd.log_metric('f1', auc - 0.1)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=project, check=True)
    page = tmp_path / "compare.html"

    done = run_cli(["runs", "compare", "one", "two", "--html", str(page)], cwd=project)

    assert done.returncode == 0, done.stderr
    text = page.read_text().replace(" ", "")
    assert '"type":"bar"' in text and "0.87" in text
    assert '"type":"parcoords"' in text
    assert text.count('<scripttype="text/javascript">/**') <= 1  # plotly.js once
