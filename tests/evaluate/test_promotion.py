"""Evaluation against the champion, reports, and promotion through gates (real models, store)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcd.config import Slice
from mlcd.digest import Digest
from mlcd.errors import EvaluationError, GateFailed, UsageError
from mlcd.evaluate import evaluate, promote, write_reports
from mlcd.objects import LocalObjectStore
from mlcd.registry import content_digest, get_version, history, register_from_path, resolve
from mlcd.store import runs
from tests.registry.fixtures import churn_frame, save_churn_model, split

GATES = [
    "roc_auc >= 0.6",
    "f1 >= champion.f1 - 0.005",
    "roc_auc better than champion at 95%",
    "no slice loses more than 0.02 accuracy",
    "latency_p99_ms <= 1000",
    "size_mb <= 50",
]
SLICES = {
    "young": Slice(column="age", max=35),
    "old": Slice(column="age", min=35),
    "plan_a": Slice(column="plan", value="a"),
}


class World:
    """A store, an object store, data split in two files, and two registered models."""

    def __init__(self, root: Path, store) -> None:  # type: ignore[no-untyped-def]
        self.root = root
        self.store = store
        self.objects = LocalObjectStore(root / "objects")
        frame = churn_frame(3000)
        self.train, self.test = split(frame, root)
        train_frame = pd.read_parquet(self.train)
        for kind in ("weak", "good"):
            save_churn_model(root / kind, train_frame, kind=kind, training_data=[self.train])
        self.cache = root / "cache"

    def register(self, kind: str) -> int:
        return register_from_path(
            self.store, self.objects, "churn", self.root / kind
        ).version.version

    def promote(self, version: int, **kwargs):  # type: ignore[no-untyped-def]
        options = dict(
            gates=GATES,
            data=self.test,
            target="churned",
            slices=SLICES,
            cache_dir=self.cache,
            resamples=300,
        )
        options.update(kwargs)
        return promote(self.store, self.objects, "churn", version, "champion", **options)


@pytest.fixture
def world(tmp_path: Path, open_store) -> World:  # type: ignore[no-untyped-def]
    return World(tmp_path, open_store(f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}"))


def test_first_model_passes_relative_gates_with_a_note(world: World) -> None:
    weak = world.register("weak")

    result = world.promote(weak)

    assert result.move is not None and result.move.to_version == weak
    notes = [r.note for r in result.evaluation.verdict.results if r.gate.kind != "absolute"]
    assert notes and all("first model" in (n or "") for n in notes)
    assert resolve(world.store, "churn@champion").version == weak


def test_better_candidate_passes_and_is_promoted_with_an_audited_report(
    world: World, tmp_path: Path
) -> None:
    weak, good = world.register("weak"), world.register("good")
    world.promote(weak)

    result = world.promote(good, reason="quarterly retrain", report_dir=tmp_path / "reports")

    assert result.evaluation.passed
    assert resolve(world.store, "churn@champion").version == good
    event = history(world.store, "churn", alias="champion")[0]
    assert (event["kind"], event["from_version"], event["version"]) == ("alias.set", weak, good)
    assert event["reason"] == "quarterly retrain"
    assert event["report_digest"] == result.report_digest
    stored = json.loads(world.objects.get_bytes(Digest.parse(result.report_digest)))
    assert stored["verdict"]["passed"] is True
    assert stored["champion"]["version"] == weak
    assert get_version(world.store, "churn", good).metrics["roc_auc"] > 0.6
    assert set(result.reports) == {"md", "html", "json", "junit"}


def test_worse_candidate_fails_leaves_the_alias_and_says_which_gate(
    world: World, tmp_path: Path
) -> None:
    good, weak = world.register("good"), world.register("weak")
    world.promote(good)

    with pytest.raises(GateFailed) as info:
        world.promote(weak, report_dir=tmp_path / "reports")

    message = info.value.message
    assert "the alias stays at 1" in message
    assert "roc_auc better than champion at 95%" in message
    assert "f1 >= champion.f1 - 0.005" in message and "short by" in message
    assert resolve(world.store, "churn@champion").version == good
    failed = history(world.store, "churn", alias="champion")[0]
    assert (failed["kind"], failed["version"], failed["from_version"]) == (
        "gate.failed",
        weak,
        good,
    )
    assert world.objects.has(Digest.parse(failed["report_digest"]))
    markdown = (tmp_path / "reports" / "report.md").read_text()
    assert markdown.startswith("## ❌ FAILED: churn/2 fails")
    assert "| ❌ | `f1 >= champion.f1 - 0.005` |" in markdown


def test_force_needs_a_reason_and_is_recorded(world: World) -> None:
    good, weak = world.register("good"), world.register("weak")
    world.promote(good)

    with pytest.raises(UsageError, match="needs a reason"):
        world.promote(weak, force=True)
    with pytest.raises(UsageError):
        world.promote(weak, force=True, reason="   ")
    result = world.promote(weak, force=True, reason="hotfix for incident 42")

    assert result.forced and resolve(world.store, "churn@champion").version == weak
    event = history(world.store, "churn", alias="champion")[0]
    assert event["reason"] == "hotfix for incident 42"
    assert event["details"]["forced"] is True


def test_gates_without_data_are_a_usage_error(world: World) -> None:
    version = world.register("good")

    with pytest.raises(UsageError, match="needs evaluation data"):
        world.promote(version, data=None)


def test_evaluation_on_training_data_is_refused_via_package_lineage(world: World) -> None:
    version = world.register("good")

    with pytest.raises(UsageError, match="among the data the model was trained on"):
        evaluate(
            world.store,
            world.objects,
            "churn",
            version,
            data=world.train,
            target="churned",
            cache_dir=world.cache,
        )


def test_evaluation_on_training_data_is_refused_via_run_inputs(world: World) -> None:
    # A package saved without lineage, made by a run whose train stage read the test file.
    frame = pd.read_parquet(world.train)
    save_churn_model(world.root / "plain", frame)
    digest = content_digest(world.test).hex
    with world.store.write() as conn:
        run_id = runs.create_run(conn, kind="pipeline")
        runs.add_artifacts(
            conn,
            run_id,
            [
                runs.ArtifactRef("input", "data/test.parquet", digest, None, "train"),
            ],
        )
    version = register_from_path(
        world.store, world.objects, "churn", world.root / "plain", run_id=run_id
    ).version.version

    with pytest.raises(UsageError, match="trained on"):
        evaluate(
            world.store,
            world.objects,
            "churn",
            version,
            data=world.test,
            target="churned",
            cache_dir=world.cache,
        )


def test_reports_markdown_html_json_and_junit(world: World, tmp_path: Path) -> None:
    weak, good = world.register("weak"), world.register("good")
    world.promote(weak)
    evaluation = evaluate(
        world.store,
        world.objects,
        "churn",
        good,
        data=world.test,
        target="churned",
        gates=[*GATES, "roc_auc >= 0.99"],
        slices=SLICES,
        resamples=200,
        cache_dir=world.cache,
    )

    paths = write_reports(evaluation, tmp_path / "out")

    markdown = paths["md"].read_text()
    assert markdown.splitlines()[0] == "## ❌ FAILED: churn/2 fails 1 of 7 gates of `champion`"
    assert "| roc_auc ↑ |" in markdown and "95% CI" in markdown
    assert "| young |" in markdown
    suite = ET.parse(paths["junit"]).getroot()
    cases = suite.findall(".//testcase")
    assert len(cases) == 7
    assert suite.get("tests") == "7" and suite.get("failures") == "1"
    failing = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failing] == ["roc_auc >= 0.99"]
    assert "short by" in failing[0].find("failure").get("message")
    document = json.loads(paths["json"].read_text())
    assert document["candidate"]["version"] == good
    assert document["deltas"]["roc_auc"]["low"] > 0
    page = paths["html"].read_text()
    assert "ROC curve" in page and "Calibration" in page and "plotly" in page.lower()
    assert "Confusion matrix" in page and "accuracy per slice" in page
    # one shared plotly.js beside the reports instead of 4.8 MB in each page (issue 19)
    shared = write_reports(evaluation, tmp_path / "shared", ("html",), plotly="directory")
    assert shared["html"].stat().st_size < paths["html"].stat().st_size - 1_000_000
    assert "src=\"plotly.min.js\"" in shared["html"].read_text()
    assert (tmp_path / "shared" / "plotly.min.js").stat().st_size > 1_000_000
    # inline in Jupyter (issue 19): verdict, metrics of both models, each gate
    inline = evaluation._repr_html_()
    assert "FAIL" in inline and "churn v2 against champion" in inline
    assert "roc_auc" in inline and "roc_auc &gt;= 0.99" in inline
    assert inline.count("<tr>") >= 7 + len(evaluation.candidate.metrics)


def test_regression_models_are_evaluated_and_reported(world: World, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression, Ridge

    from mlcd.registry import save_model, set_alias

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.random(600), "b": rng.random(600)})
    X["y"] = 3 * X.a - X.b + rng.normal(0, 0.1, 600)
    X.iloc[400:].to_csv(tmp_path / "test.csv", index=False)
    features, target = X.iloc[:400][["a", "b"]], X.iloc[:400]["y"]
    save_model(Ridge(alpha=50).fit(features, target), tmp_path / "r1", sample_input=features)
    save_model(LinearRegression().fit(features, target), tmp_path / "r2", sample_input=features)
    for name in ("r1", "r2"):
        register_from_path(world.store, world.objects, "price", tmp_path / name)
    set_alias(world.store, "price", "champion", 1)

    evaluation = evaluate(
        world.store,
        world.objects,
        "price",
        2,
        data=tmp_path / "test.csv",
        target="y",
        gates=["rmse <= champion.rmse", "r2 >= 0.9"],
        resamples=200,
        cache_dir=world.cache,
    )

    assert evaluation.task == "regression" and evaluation.passed
    assert evaluation.deltas["rmse"].high < 0
    page = write_reports(evaluation, tmp_path / "out", ("html",))["html"].read_text()
    assert "Predicted vs actual" in page


def test_missing_label_column_is_explained(world: World) -> None:
    version = world.register("good")

    with pytest.raises(UsageError, match="label column 'label'") as info:
        evaluate(
            world.store,
            world.objects,
            "churn",
            version,
            data=world.test,
            target="label",
            cache_dir=world.cache,
        )
    assert "churned" in (info.value.hint or "")


def test_rows_without_a_label_are_refused_with_a_hint(world: World, tmp_path: Path) -> None:
    version = world.register("good")
    frame = pd.read_parquet(world.test)
    frame.loc[5, "churned"] = None
    frame.to_parquet(tmp_path / "holes.parquet")

    with pytest.raises(EvaluationError, match="nulls") as info:
        evaluate(
            world.store,
            world.objects,
            "churn",
            version,
            data=tmp_path / "holes.parquet",
            target="churned",
            cache_dir=world.cache,
        )
    assert "drop rows" in (info.value.hint or "")
