"""Monitoring reports: JSON for machines, Markdown for pull requests and chat, HTML with plots.

The HTML page is one self-contained file (plotly.js inlined, works offline): the verdict,
drift scores per method against their thresholds, reference-versus-current distributions of
every column (drifted ones first), data quality per column, and performance over time next
to the version's evaluation baseline.
"""

from __future__ import annotations

import functools
import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd import plotlyjs

if TYPE_CHECKING:
    from mlcd.monitor.drift import FeatureDrift
    from mlcd.monitor.run import MonitorReport

#: Distribution plots drawn at most (drifted and highest-scoring columns first).
MAX_PLOTS = 60
_COLS = 3


def _when(ts: float | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"


def _title(report: MonitorReport) -> str:
    s = report.subject
    who = s.model + (f"@{s.alias}" if s.alias else "") + (f" (v{s.version})" if s.version else "")
    return f"Monitoring report: {who}"


def plain(value: Any) -> Any:
    """``value`` with numpy scalars made Python ones and NaN/infinity made None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    return value


def to_json(report: MonitorReport) -> str:
    """The report as JSON text."""
    return json.dumps(plain(report.to_dict()), indent=2, default=str, allow_nan=False)


def _sorted_features(report: MonitorReport) -> list[FeatureDrift]:
    def key(f: FeatureDrift) -> tuple[int, float]:
        if f.score is None:
            return (2, 0.0)
        strength = (
            f.threshold / max(f.score, 1e-300)
            if f.method in ("ks", "chisquare")
            else (f.score / f.threshold if f.threshold else f.score)
        )
        return (0 if f.drifted else 1, -strength)

    return sorted([*report.drift.predictions, *report.drift.features], key=key)


# ---------------------------------------------------------------- markdown
def to_markdown(report: MonitorReport) -> str:
    """A Markdown summary (tables), fit for a pull-request comment or a chat message."""
    drift = report.drift
    lines = [f"## {_title(report)}", ""]
    verdict = "❌ thresholds crossed" if report.failed else "✅ within thresholds"
    lines += [
        f"**{verdict}** · window: {report.window.describe() if report.window.start or report.window.last else 'file'}"
        f" · {report.summary.rows} rows ({report.summary.rejected} rejected)"
        f" · drifted features: {len(drift.drifted)}/{len(drift.tested)} ({drift.share:.0%},"
        f" threshold {drift.share_threshold:.0%})",
        "",
    ]
    for failure in report.failures:
        lines.append(f"- {failure}")
    for warning in report.warnings:
        lines.append(f"- ⚠️ {warning}")
    for note in report.notes:
        lines.append(f"- note: {note}")
    if report.failures or report.warnings or report.notes:
        lines.append("")
    lines += [
        "| column | kind | method | score | threshold | drift | ref n | current n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in _sorted_features(report):
        mark = "🔴" if f.drifted else ("⚪" if f.drifted is None else "🟢")
        name = f.name + (" *(prediction)*" if f.role == "prediction" else "")
        lines.append(
            f"| {name} | {f.kind} | {f.method} | {_num(f.score)} | {f.threshold:g} | {mark} "
            f"{f.status} | {f.n_reference} | {f.n_current} |"
        )
    q = report.quality
    lines += [
        "",
        f"**Data quality** · missing {q.missing_share:.2%} · out of range/unseen "
        f"{q.out_of_range_share:.2%} · rejected {q.rejected_share:.2%}",
    ]
    problems = [f for f in q.features if f.problems]
    if problems or q.missing_columns:
        lines += ["", "| column | problem |", "|---|---|"]
        lines += [f"| {f.name} | {'; '.join(f.problems)} |" for f in problems]
        lines += [f"| {c} | missing from the window |" for c in q.missing_columns]
    p = report.performance
    if p is not None:
        lines += ["", f"**Performance** ({p.task}) · {p.labels} labels, coverage {p.coverage:.1%}"]
        if p.overall:
            names = [m for m in p.overall if m != "n"]
            lines += ["", "| metric | window | baseline |", "|---|---|---|"]
            lines += [f"| {m} | {_num(p.overall[m])} | {_num(p.baseline.get(m))} |" for m in names]
        if p.note:
            lines += ["", f"_{p.note}_"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- html
def _figure_html(figure: Any) -> str:
    return str(figure.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True}))


def _drift_scores(report: MonitorReport) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    features = [f for f in _sorted_features(report) if f.score is not None]
    methods = sorted({f.method for f in features})
    if not methods:
        return None
    figure = make_subplots(rows=1, cols=len(methods), subplot_titles=methods)
    for index, method in enumerate(methods, 1):
        chosen = [f for f in features if f.method == method]
        figure.add_trace(
            go.Bar(
                x=[f.name for f in chosen],
                y=[f.score for f in chosen],
                marker_color=["#d62728" if f.drifted else "#2ca02c" for f in chosen],
                name=method,
                showlegend=False,
            ),
            row=1,
            col=index,
        )
        figure.add_hline(y=chosen[0].threshold, line_dash="dash", row=1, col=index)  # type: ignore[arg-type]
    figure.update_layout(height=360, margin={"t": 40, "b": 40}, title="Drift score per column")
    return figure


def _distributions(report: MonitorReport) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    features = [f for f in _sorted_features(report) if f.distribution][:MAX_PLOTS]
    if not features:
        return None
    rows = math.ceil(len(features) / _COLS)
    titles = [
        f"{f.name}: {f.method} {_num(f.score, 3)}{' DRIFT' if f.drifted else ''}" for f in features
    ]
    figure = make_subplots(rows=rows, cols=_COLS, subplot_titles=titles)
    for index, f in enumerate(features):
        row, col = index // _COLS + 1, index % _COLS + 1
        d = f.distribution
        if "edges" in d:
            edges = d["edges"]
            x = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
        else:
            x = d["labels"]
        for side, color in (("reference", "#1f77b4"), ("current", "#ff7f0e")):
            figure.add_trace(
                go.Bar(
                    x=x,
                    y=d[side],
                    name=side,
                    marker_color=color,
                    opacity=0.6,
                    showlegend=index == 0,
                    legendgroup=side,
                ),
                row=row,
                col=col,
            )
    figure.update_layout(
        barmode="overlay",
        height=260 * rows,
        margin={"t": 60},
        title="Reference vs current distribution (share of rows)",
    )
    return figure


def _quality_figure(report: MonitorReport) -> Any:
    import plotly.graph_objects as go

    q = report.quality
    if not q.features:
        return None
    names = [f.name for f in q.features]
    figure = go.Figure(
        [
            go.Bar(x=names, y=[f.missing_share for f in q.features], name="missing or invalid"),
            go.Bar(
                x=names,
                y=[f.out_of_range_share + f.unseen_share for f in q.features],
                name="out of range / unseen",
            ),
        ]
    )
    figure.add_hline(y=q.max_missing_share, line_dash="dot", annotation_text="missing threshold")
    figure.update_layout(barmode="group", height=320, title="Data quality per column")
    return figure


def _performance_figure(report: MonitorReport) -> Any:
    import plotly.graph_objects as go

    p = report.performance
    if p is None or not p.periods:
        return None
    names = [m for m in p.overall if m != "n"]
    figure = go.Figure()
    x = [datetime.fromtimestamp(r["start"], UTC) for r in p.periods]
    for name in names:
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[r["metrics"].get(name) for r in p.periods],
                mode="lines+markers",
                name=name,
                visible=True if name == (p.metric or names[0]) else "legendonly",
            )
        )
        if name in p.baseline and name == (p.metric or names[0]):
            figure.add_hline(
                y=p.baseline[name], line_dash="dash", annotation_text=f"baseline {name}"
            )
    figure.update_layout(height=340, title="Performance over time (labelled predictions)")
    if len(p.periods) == 1:
        figure.update_xaxes(range=_one_period_range(p.periods[0]))
    return figure


def _one_period_range(period: dict[str, Any]) -> list[datetime]:
    """An x range around a single point, so plotly does not zoom to sub-millisecond ticks."""
    start = float(period["start"])
    end = max(float(period.get("end") or start), start + 3600.0)
    pad = max((end - start) / 2, 12 * 3600.0)
    return [datetime.fromtimestamp(start - pad, UTC), datetime.fromtimestamp(end + pad, UTC)]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4}.bad{color:#b00020}.ok{color:#1b5e20}
"""


def to_html(report: MonitorReport, plotly: str = "inline") -> str:
    """An HTML page with plots: self-contained, or loading the shared ``plotly.min.js``."""

    title = html.escape(_title(report))
    verdict = (
        '<p class="bad"><b>Thresholds crossed:</b></p><ul>'
        + "".join(f"<li>{html.escape(f)}</li>" for f in report.failures)
        + "</ul>"
        if report.failed
        else '<p class="ok"><b>Within thresholds.</b></p>'
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
    warnings += "".join(f"<li>note: {html.escape(n)}</li>" for n in report.notes)
    s = report.summary
    facts = _table(
        ["window", "rows", "rejected", "first", "last", "reference rows", "drifted share"],
        [
            [
                report.window.describe() if (report.window.start or report.window.last) else "file",
                s.rows,
                s.rejected,
                _when(s.first_at),
                _when(s.last_at),
                report.reference.get("rows"),
                f"{report.drift.share:.0%} (threshold {report.drift.share_threshold:.0%})",
            ]
        ],
    )
    drift_rows = [
        [
            f.name,
            f.role,
            f.kind,
            f.method,
            _num(f.score),
            f"{f.threshold:g}",
            f.status,
            f.n_reference,
            f.n_current,
            f.reason,
        ]
        for f in _sorted_features(report)
    ]
    drift_table = _table(
        [
            "column",
            "role",
            "kind",
            "method",
            "score",
            "threshold",
            "status",
            "ref n",
            "current n",
            "why this method",
        ],
        drift_rows,
    )
    q = report.quality
    quality_table = _table(
        [
            "column",
            "missing",
            "invalid",
            "missing share",
            "ref missing share",
            "out of range",
            "unseen",
            "problems",
        ],
        [
            [
                f.name,
                f.missing,
                f.invalid,
                f"{f.missing_share:.2%}",
                f"{f.reference_missing_share:.2%}",
                f.out_of_range,
                f.unseen,
                "; ".join(f.problems),
            ]
            for f in q.features
        ],
    )
    rejected = _table(
        ["rejection message", "rows"], [[k, v] for k, v in q.rejection_errors.items()]
    )
    parts = [
        f"<h1>{title}</h1>",
        f"<p>Generated {_when(report.generated_at)}</p>",
        verdict,
        f"<ul>{warnings}</ul>" if warnings else "",
        facts,
        "<h2>Drift</h2>",
    ]
    for figure in (_drift_scores(report), _distributions(report)):
        if figure is not None:
            parts.append(_figure_html(figure))
    parts += [drift_table, "<h2>Data quality</h2>"]
    figure = _quality_figure(report)
    if figure is not None:
        parts.append(_figure_html(figure))
    parts.append(quality_table)
    if q.rejection_errors:
        parts.append(rejected)
    p = report.performance
    parts.append("<h2>Performance</h2>")
    if p is None:
        parts.append("<p>No labels: performance is not measured for this window.</p>")
    else:
        parts.append(
            f"<p>{p.labels} labelled predictions ({p.coverage:.1%} of the window), "
            f"{p.pending} labels waiting for their prediction.</p>"
        )
        figure = _performance_figure(report)
        if figure is not None:
            parts.append(_figure_html(figure))
        names = sorted(set(p.overall) | set(p.baseline) - {"n"})
        parts.append(
            _table(
                ["metric", "window", "baseline"],
                [[m, _num(p.overall.get(m)), _num(p.baseline.get(m))] for m in names if m != "n"],
            )
        )
        if p.note:
            parts.append(f"<p><i>{html.escape(p.note)}</i></p>")
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style>{plotlyjs.script(plotly)}</head>"
        f"<body>{body}</body></html>"
    )


def write_reports(
    report: MonitorReport, directory: str | Path, plotly: str = "inline"
) -> dict[str, Path]:
    """Write ``report.html``, ``report.json`` and ``report.md`` into ``directory``.

    ``plotly``: ``inline`` (a self-contained page) or ``directory`` (one shared
    ``plotly.min.js`` beside it).

    Returns:
        ``{"html": path, "json": path, "markdown": path}``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, name, render in (
        ("json", "report.json", to_json),
        ("markdown", "report.md", to_markdown),
        ("html", "report.html", functools.partial(to_html, plotly=plotlyjs.check(plotly))),
    ):
        path = folder / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(render(report), encoding="utf-8")
        tmp.replace(path)
        written[kind] = path
    plotlyjs.place(plotly, folder)
    return written
