"""Contracts in a run: a violation fails the stage like a failing command, and nothing is lost.

The real ``mlcd run`` subprocess on a small project: ``prepare`` writes customers from a raw
CSV (scaled by a param, so a "unit change" is one edit away), ``train`` reads them. A broken
contract on what ``prepare`` writes fails it with exit 3, names the column and the failing-row
count, leaves ``mlcd.lock`` and the run cache as they were and does not run ``train``; raw data
that breaks its contract stops the stage that reads it before it runs; ``mlcd data validate``
says the same for CI, with JUnit.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.contracts.test_validate import customers
from tests.pipeline.conftest import Cli, calls, outcomes, run_json

CONFIG = """
stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py, raw.csv]
    params: [scale]
    outs: [data/customers.parquet]
  train:
    cmd: python train.py
    deps: [train.py, data/customers.parquet]
    outs: [model.txt]
data:
  raw:
    path: raw.csv
    columns:
      customer_id: {nullable: false}
  customers:
    path: data/customers.parquet
    key: [customer_id]
    columns:
      monthly_charges: {type: number, min: 10, max: 200}
      tenure_months: {type: integer, min: 0, max: 72}
    checks:
      - {name: billing, expr: "total_charges >= monthly_charges", warn: true}
"""

PREPARE = """
import pathlib, yaml
import pandas as pd
scale = yaml.safe_load(open("params.yaml"))["scale"]
frame = pd.read_csv("raw.csv")
frame["monthly_charges"] = frame["monthly_charges"] * scale
pathlib.Path("data").mkdir(exist_ok=True)
frame.to_parquet("data/customers.parquet", index=False)
open("calls.log", "a").write("prepare\\n")
"""

TRAIN = """
import pandas as pd
rows = len(pd.read_parquet("data/customers.parquet"))
open("model.txt", "w").write(str(rows))
open("calls.log", "a").write("train\\n")
"""


def _project(make_project: Cli) -> Path:
    root = make_project(
        CONFIG, {"prepare.py": PREPARE, "train.py": TRAIN, "params.yaml": "scale: 1\n"}
    )
    customers(300).to_csv(root / "raw.csv", index=False)
    return root


def test_a_unit_change_fails_the_stage_and_keeps_the_lock_and_cache(
    make_project: Cli, mlcd: Cli
) -> None:
    root = _project(make_project)
    assert outcomes(run_json(mlcd, root)) == {"prepare": "ran", "train": "ran"}
    lock = (root / "mlcd.lock").read_text()

    (root / "params.yaml").write_text("scale: 100\n")  # euros -> cents
    broken = mlcd(root, "run")
    assert broken.returncode == 3, broken.stdout + broken.stderr
    assert "data contract failed" in broken.stderr
    assert "column 'monthly_charges'" in broken.stderr and "above the maximum 200" in broken.stderr
    assert calls(root) == ["prepare", "train", "prepare"]  # train did not run on bad data
    assert (root / "mlcd.lock").read_text() == lock  # the last good state stands
    report = json.loads(
        (root / ".mlcd" / "reports" / "data" / "prepare" / "report.json").read_text()
    )
    [customers_report] = report
    failing = [r for r in customers_report["results"] if not r["passed"]]
    assert any(r["check"] == "max" and r["failing_rows"] > 0 and r["sample"] for r in failing)

    # Back to euros: the good run is restored from the cache, not run again.
    (root / "params.yaml").write_text("scale: 1\n")
    back = run_json(mlcd, root)
    assert outcomes(back)["prepare"] == "cached"
    assert calls(root) == ["prepare", "train", "prepare"]


def test_raw_data_breaking_its_contract_stops_the_reader_before_it_runs(
    make_project: Cli, mlcd: Cli
) -> None:
    root = _project(make_project)
    frame = customers(300)
    frame.loc[[7, 8, 9], "customer_id"] = None
    frame.to_csv(root / "raw.csv", index=False)
    result = mlcd(root, "run", "--json")
    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert outcomes(document)["prepare"] == "failed"
    assert "customer_id': 3 null value(s)" in json.dumps(document), json.dumps(
        document["stages"][0]
    )
    assert calls(root) == []  # refused before the command ran


def test_data_validate_for_ci_with_junit(make_project: Cli, mlcd: Cli) -> None:
    root = _project(make_project)
    assert run_json(mlcd, root)
    ok = mlcd(root, "data", "validate", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["passed"] is True

    frame = pd_read(root)
    frame.loc[:4, "tenure_months"] = 99
    frame.to_parquet(root / "data" / "customers.parquet", index=False)
    junit = root / "reports" / "junit.xml"
    bad = mlcd(root, "data", "validate", "customers", "--junit", str(junit))
    assert bad.returncode == 1
    assert "tenure_months" in bad.stdout and "5 row(s) above the maximum 72" in bad.stdout
    assert "<failure" in junit.read_text() and "tenure_months" in junit.read_text()
    by_path = mlcd(root, "data", "validate", "data/customers.parquet", "--json")
    assert by_path.returncode == 1 and json.loads(by_path.stdout)["data"][0]["name"] == "customers"
    unknown = mlcd(root, "data", "validate", "nope")
    assert unknown.returncode == 2 and "not a dataset declared under data:" in unknown.stderr


def test_an_unreadable_contract_is_a_config_error_with_its_line(
    make_project: Cli, mlcd: Cli
) -> None:
    root = make_project(CONFIG.replace("total_charges >= monthly_charges", "total_charges => 1"))
    result = mlcd(root, "data", "validate")
    assert result.returncode == 2
    assert "mlcd.yaml:" in result.stderr and "data.customers.checks" in result.stderr
    assert "cannot read 'total_charges => 1'" in result.stderr


def pd_read(root: Path):  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.read_parquet(root / "data" / "customers.parquet")
