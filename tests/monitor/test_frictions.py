"""Issue 19: a tiny window is "not enough data", never drift; a missing prediction column in
the reference is a note, not a crossed threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.monitor.conftest import frame


def _files(project: Path, current_rows: int, shift: float = 0.0) -> None:
    frame(5000, seed=1, columns=49).to_parquet(project / "ref.parquet")
    shifts = {f"x{i}": shift for i in range(49)} if shift else None
    frame(current_rows, seed=2, shift=shifts, columns=49).to_parquet(project / "cur.parquet")


def _monitor(project: Path) -> tuple[int, dict, str]:
    result = run_cli(
        ["monitor", "m", "--reference", "ref.parquet", "--current", "cur.parquet", "--json"],
        project,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def test_a_tiny_window_is_not_enough_data_and_exits_0(project: Path) -> None:
    _files(project, 21)
    code, report, _ = _monitor(project)
    assert code == 0, report["failures"]
    assert report["drift"]["drifted"] == []
    statuses = {f["status"] for f in report["drift"]["features"]}
    assert statuses == {"not enough data"}
    assert any("not enough data" in n for n in report["notes"])
    assert report["failures"] == []


def test_a_missing_prediction_column_is_a_note_not_a_failure(project: Path) -> None:
    _files(project, 1021)
    code, report, _ = _monitor(project)
    assert code == 0, report["failures"]
    assert any("no 'prediction' column" in n for n in report["notes"])
    assert not any("prediction" in f for f in report["failures"])
    assert report["drift"]["drifted"] == []


def test_a_small_window_gets_a_test_not_a_distance(project: Path) -> None:
    _files(project, 300)
    code, report, _ = _monitor(project)
    assert {f["method"] for f in report["drift"]["features"]} == {"ks"}
    assert code == 0, report["failures"]


def test_a_real_shift_is_still_drift_and_min_rows_is_configurable(project: Path) -> None:
    _files(project, 60, shift=1.5)
    with open(project / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write("monitor:\n  min_rows: 50\n")
    code, report, _ = _monitor(project)
    assert code == 1
    assert len(report["drift"]["drifted"]) == 49

    (project / "mlcd.yaml").write_text(
        (project / "mlcd.yaml").read_text().replace("min_rows: 50", "min_rows: 100")
    )
    code, report, _ = _monitor(project)
    assert code == 0
    assert report["drift"]["drifted"] == []


def test_a_one_period_performance_chart_spans_hours_not_milliseconds() -> None:
    # guards against a single labelled period being drawn with sub-millisecond ticks (issue 19)
    from types import SimpleNamespace

    from mlcd.monitor.performance import PerformanceReport
    from mlcd.monitor.report import _performance_figure

    start = 1_764_000_000.0
    performance = PerformanceReport(
        task="classification",
        labels=50,
        predictions=50,
        overall={"accuracy": 0.9, "n": 50},
        periods=[
            {"start": start, "end": start + 86400, "labels": 50, "metrics": {"accuracy": 0.9}}
        ],
        baseline={},
    )
    figure = _performance_figure(SimpleNamespace(performance=performance))  # type: ignore[arg-type]
    low, high = figure.layout.xaxis.range
    assert (high - low).total_seconds() >= 86400
    assert low.timestamp() < start < start + 86400 < high.timestamp()


def test_a_monitor_report_displays_inline_in_jupyter(tmp_path: Path) -> None:
    # guards against notebook users getting a dataclass repr instead of a readable report (issue 19)
    from mlcd.config import parse_config
    from mlcd.monitor.run import run_monitor

    reference = frame(2000, seed=1, columns=3)
    current = frame(2000, seed=2, shift={"x0": 3.0}, columns=3)
    current = current.rename(columns={"x1": "<script>x1</script>"})
    reference = reference.rename(columns={"x1": "<script>x1</script>"})
    reference.to_parquet(tmp_path / "ref.parquet")
    current.to_parquet(tmp_path / "cur.parquet")

    report = run_monitor(
        config=parse_config("{}"),
        root=tmp_path,
        target="m",
        reference=tmp_path / "ref.parquet",
        current=tmp_path / "cur.parquet",
    )
    page = report._repr_html_()

    assert "monitor m" in page and "<table>" in page
    assert "x0" in page and "drift" in page
    assert "<script>x1" not in page and "&lt;script&gt;x1&lt;/script&gt;" in page


def test_monitor_reports_can_share_one_plotly_js(project: Path) -> None:
    # guards against every HTML report inlining 4.8 MB of plotly.js (issue 19 cosmetic)
    _files(project, 1021)

    inline = run_cli(
        ["monitor", "m", "--reference", "ref.parquet", "--current", "cur.parquet",
         "--report-dir", "inline"],
        project,
    )  # fmt: skip
    shared = run_cli(
        ["monitor", "m", "--reference", "ref.parquet", "--current", "cur.parquet",
         "--report-dir", "shared", "--plotly", "directory"],
        project,
    )  # fmt: skip
    wrong = run_cli(["monitor", "m", "--current", "cur.parquet", "--plotly", "cdn"], project)

    assert inline.returncode == 0 and shared.returncode == 0, shared.stderr
    assert (project / "inline" / "report.html").stat().st_size > 1_000_000
    page = (project / "shared" / "report.html").read_text()
    assert len(page) < 1_000_000 and '<script src="plotly.min.js"></script>' in page
    assert (project / "shared" / "plotly.min.js").stat().st_size > 1_000_000
    assert not (project / "inline" / "plotly.min.js").exists()
    assert wrong.returncode == 2 and "--plotly" in wrong.stderr


def test_bh_correction_removes_chance_flags_among_many_columns_and_keeps_real_drift(
    tmp_path: Path,
) -> None:
    # guards against ~5% of healthy columns being flagged as drift by chance (issue 19 item 5)
    from scipy.stats import false_discovery_control

    from mlcd.config import parse_config
    from mlcd.monitor.run import run_monitor

    frame(5000, seed=1, columns=200).to_parquet(tmp_path / "ref.parquet")
    shifted = {"x0": 1.0, "x1": 1.0, "x2": 1.0}
    frame(300, seed=2, shift=shifted, columns=200).to_parquet(tmp_path / "cur.parquet")

    def drifted(config: str) -> tuple[set[str], list]:
        report = run_monitor(
            config=parse_config(config),
            root=tmp_path,
            target="m",
            reference=tmp_path / "ref.parquet",
            current=tmp_path / "cur.parquet",
        )
        return {f.name for f in report.drift.drifted}, report.drift.features

    plain, _ = drifted("{}")
    corrected, features = drifted("monitor: {drift: {correction: bh}}")

    assert {"x0", "x1", "x2"} < plain and len(plain) > 3  # chance flags without correction
    assert corrected == {"x0", "x1", "x2"}
    tested = [f for f in features if f.method == "ks"]
    expected = false_discovery_control([f.score for f in tested], method="bh")
    assert [f.statistics["q_value"] for f in tested] == pytest.approx(list(expected))
