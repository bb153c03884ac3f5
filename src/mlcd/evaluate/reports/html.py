"""The HTML report: the Markdown verdict and tables, plus plotly charts.

Classification: ROC and precision-recall curves, confusion matrices, calibration and slice
bars. Regression: predicted against actual, residuals and slice bars. plotly.js is embedded
once, so the file works offline (CI artifacts, air-gapped machines).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcd import plotlyjs
from mlcd.evaluate.metrics import metrics_for

if TYPE_CHECKING:
    from mlcd.evaluate.evaluation import Evaluation, ModelResult

_MAX_POINTS = 500
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}
th{background:#f6f8fa} code{background:#f6f8fa;padding:0 .2em}
.pass{color:#1a7f37}.fail{color:#cf222e}
.badge{display:inline-block;padding:0 .45em;border-radius:.8em;color:#fff;font-size:.8em;
font-weight:600;letter-spacing:.02em;vertical-align:middle}
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}.badge.unsure{background:#9a6700}
"""


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    if len(x) > _MAX_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, _MAX_POINTS).astype(int))
        x, y = x[keep], y[keep]
    return x.tolist(), y.tolist()


def _models(e: Evaluation) -> list[tuple[str, ModelResult]]:
    out = [(f"candidate {e.candidate.ref}", e.candidate)]
    if e.champion is not None:
        out.append((f"champion {e.champion.ref}", e.champion))
    return out


def _curves(e: Evaluation) -> list[Any]:
    if all(result.scored is None for _, result in _models(e)):
        return []  # read back from a stored report: no rows, and no sklearn import to pay
    import plotly.graph_objects as go
    from sklearn.metrics import precision_recall_curve, roc_curve

    roc, pr = go.Figure(), go.Figure()
    for label, result in _models(e):
        scored = result.scored
        if (
            scored is None
            or scored.proba is None
            or scored.k != 2
            or len(set(scored.y.tolist())) < 2
        ):
            continue
        truth = scored.y == 1
        fpr, tpr, _ = roc_curve(truth, scored.proba[:, 1])
        x, y = _thin(fpr, tpr)
        roc.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label))
        precision, recall, _ = precision_recall_curve(truth, scored.proba[:, 1])
        x, y = _thin(recall[::-1], precision[::-1])
        pr.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label))
    if not roc.data:
        return []
    roc.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"}
        )
    )
    roc.update_layout(
        title="ROC curve", xaxis_title="false positive rate", yaxis_title="true positive rate"
    )
    pr.update_layout(title="Precision-recall curve", xaxis_title="recall", yaxis_title="precision")
    return [roc, pr]


def _confusions(e: Evaluation) -> list[Any]:
    import plotly.graph_objects as go

    figures = []
    labels = [str(c) for c in (e.classes or [])]
    for label, result in _models(e):
        if result.confusion is None:
            continue
        figure = go.Figure(
            go.Heatmap(
                z=result.confusion,
                x=labels,
                y=labels,
                colorscale="Blues",
                text=result.confusion,
                texttemplate="%{text}",
            )
        )
        figure.update_layout(
            title=f"Confusion matrix: {label}",
            xaxis_title="predicted",
            yaxis_title="actual",
            yaxis={"autorange": "reversed"},
        )
        figures.append(figure)
    return figures


def _calibration(e: Evaluation) -> list[Any]:
    import plotly.graph_objects as go

    figure = go.Figure()
    for label, result in _models(e):
        curve = result.calibration or {}
        if curve.get("predicted"):
            figure.add_trace(
                go.Scatter(
                    x=curve["predicted"], y=curve["observed"], mode="lines+markers", name=label
                )
            )
    if not figure.data:
        return []
    figure.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "grey"}
        )
    )
    figure.update_layout(
        title="Calibration",
        xaxis_title="mean predicted probability",
        yaxis_title="observed frequency",
    )
    return [figure]


def _regression(e: Evaluation) -> list[Any]:
    import plotly.graph_objects as go

    scatter, residuals = go.Figure(), go.Figure()
    rng = np.random.default_rng(0)
    for label, result in _models(e):
        scored = result.scored
        if scored is None:  # read back from a stored report: no rows to plot
            continue
        index = np.arange(scored.n)
        if scored.n > 2000:
            index = np.sort(rng.choice(scored.n, 2000, replace=False))
        scatter.add_trace(
            go.Scatter(
                x=scored.y[index].tolist(),
                y=scored.pred[index].tolist(),
                mode="markers",
                name=label,
                opacity=0.5,
            )
        )
        residuals.add_trace(
            go.Histogram(x=(scored.pred - scored.y).tolist(), name=label, opacity=0.6)
        )
    scatter.update_layout(
        title="Predicted vs actual", xaxis_title="actual", yaxis_title="predicted"
    )
    residuals.update_layout(title="Residuals", barmode="overlay", xaxis_title="predicted - actual")
    return [scatter, residuals]


def _slices(e: Evaluation) -> list[Any]:
    import plotly.graph_objects as go

    if not e.slice_rows:
        return []
    metric = metrics_for(e.task)[0]
    figure = go.Figure()
    names = list(e.slice_rows)
    for label, result in _models(e):
        values = [result.slices.get(n, {}).get(metric) for n in names]
        figure.add_trace(go.Bar(x=names, y=values, name=label))
    figure.update_layout(title=f"{metric} per slice", barmode="group", yaxis_title=metric)
    return [figure]


def render_html(evaluation: Evaluation, plotly: str = "inline") -> str:
    """An HTML page: self-contained, or loading the shared ``plotly.min.js`` beside it."""
    from mlcd.evaluate.reports.markdown import render_markdown

    e = evaluation
    figures: list[Any] = []
    if e.task == "classification":
        figures += _curves(e) + _confusions(e) + _calibration(e)
    else:
        figures += _regression(e)
    figures += _slices(e)
    parts = []
    for index, figure in enumerate(figures):
        figure.update_layout(height=420, margin={"l": 50, "r": 20, "t": 50, "b": 40})
        first = plotlyjs.include(plotly) if index == 0 else False
        parts.append(figure.to_html(full_html=False, include_plotlyjs=first))
    body = _markdown_to_html(render_markdown(e))
    title = html.escape(f"mlcd evaluation: {e.candidate.ref}")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body>\n{body}\n"
        + "\n".join(f"<div class='chart'>{p}</div>" for p in parts)
        + "\n</body></html>\n"
    )


def _markdown_to_html(text: str) -> str:
    """Just enough Markdown for our own report: headings, paragraphs, tables, code, bold."""
    import re

    def inline(value: str) -> str:
        value = html.escape(value)
        value = re.sub(r"`([^`]*)`", r"<code>\1</code>", value)
        value = re.sub(r"\*\*([^*]*)\*\*", r"<b>\1</b>", value)
        # CSS badges, not emoji: a machine without an emoji font would draw empty boxes
        value = value.replace("✅", "<span class='badge pass'>PASS</span>")
        value = value.replace("⚠️", "<span class='badge unsure'>INCONCLUSIVE</span>")
        return value.replace("❌", "<span class='badge fail'>FAIL</span>")

    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        head, *rows = table
        out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>")
        out.extend("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in rows)
        out.append("</table>")
        table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not all(set(c) <= {"-"} and c for c in cells):
                table.append(cells)
            continue
        flush()
        if line.startswith("### "):
            out.append(f"<h3>{inline(line[4:])}</h3>")
        elif line.startswith("## "):
            out.append(f"<h2>{inline(line[3:])}</h2>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)
