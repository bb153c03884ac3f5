"""Side-by-side comparison of runs: params and metrics in one table, metric curves as plotly HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from mlcd import plotlyjs
from mlcd.errors import UsageError
from mlcd.store.tables import run_metrics
from mlcd.tracking.query import RunRecord, get

#: More points than this per curve are thinned evenly (the last point is always kept).
MAX_POINTS = 5000


@dataclass(frozen=True)
class ComparisonRow:
    """One param or metric across the compared runs (None where a run lacks it)."""

    kind: str  # param | metric
    key: str
    values: tuple[Any, ...]

    @property
    def differs(self) -> bool:
        """Whether the runs disagree (a missing value counts as different)."""
        return len({repr(v) for v in self.values}) > 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "key": self.key,
            "values": list(self.values),
            "differs": self.differs,
        }


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: one row per param and per metric."""

    runs: tuple[RunRecord, ...]
    rows: tuple[ComparisonRow, ...]

    def _repr_html_(self) -> str:
        """The side-by-side table, inline in Jupyter (differing rows marked)."""
        return f"<div class='mlcd-nb'>{_table_html(self)}</div>"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "runs": [r.to_dict() for r in self.runs],
            "rows": [row.to_dict() for row in self.rows],
        }


def compare_runs(conn: Connection, refs: Sequence[str]) -> Comparison:
    """Load runs (ids, id prefixes or names) and line up their params and latest metrics.

    Raises:
        UsageError: fewer than two runs given.
        NotFound: a run does not exist.
    """
    if len(refs) < 2:
        raise UsageError(
            "compare needs at least two runs", hint="mlcd runs compare RUN RUN [RUN...]"
        )
    records = tuple(get(conn, ref) for ref in refs)
    rows: list[ComparisonRow] = []
    for kind, attr in (("param", "params"), ("metric", "metrics")):
        keys = sorted({k for r in records for k in getattr(r, attr)})
        rows.extend(
            ComparisonRow(kind, key, tuple(getattr(r, attr).get(key) for r in records))
            for key in keys
        )
    return Comparison(records, tuple(rows))


def metric_curves(
    conn: Connection,
    run_ids: Sequence[str],
    keys: Sequence[str] | None = None,
    thin: bool = True,
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{metric: {run_id: [(step, value), ...]}}`` from every logged point, ordered by step
    (evenly thinned to ``MAX_POINTS`` unless ``thin`` is False: see :func:`downsample`)."""
    stmt = select(
        run_metrics.c.run_id, run_metrics.c.key, run_metrics.c.step, run_metrics.c.value
    ).where(run_metrics.c.run_id.in_(list(run_ids)))
    if keys:
        stmt = stmt.where(run_metrics.c.key.in_(list(keys)))
    stmt = stmt.order_by(
        run_metrics.c.key, run_metrics.c.run_id, run_metrics.c.step, run_metrics.c.id
    )
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run_id, key, step, value in conn.execute(stmt):
        curves.setdefault(key, {}).setdefault(run_id, []).append((int(step), float(value)))
    if not thin:
        return curves
    return {
        key: {run: _thin(points) for run, points in per_run.items()}
        for key, per_run in curves.items()
    }


def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    kept = [points[int(i * stride)] for i in range(MAX_POINTS - 1)]
    return [*kept, points[-1]]


def _label(run: RunRecord) -> str:
    return f"{run.name} ({run.id[:8]})" if run.name else run.id[:8]


def curves_html(
    comparison: Comparison,
    curves: dict[str, dict[str, list[tuple[int, float]]]],
    plots: Sequence[str] = (),
    plotly: str = "inline",
) -> str:
    """An HTML page: the comparison table, metric charts, one plot per metric with a series,
    then ``plots`` (HTML fragments of the runs' declared plots files).

    A metric with a single point per run is in the table and the bars only; plotly.js is
    inlined (``plotly="inline"``) so the page opens offline (a CI artifact, an air-gapped
    laptop), or loaded from a shared ``plotly.min.js`` beside it (``directory``).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    runs = comparison.runs
    names = {r.id: _label(r) for r in runs}
    series = {
        key: per_run for key, per_run in curves.items() if any(len(p) > 1 for p in per_run.values())
    }
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>mlcd runs compare</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}tr.differs{background:#fff6d5}</style>",
        plotlyjs.script(plotly),
        "</head><body><h1>Run comparison</h1>",
        _table_html(comparison),
    ]
    scalars = _scalar_figures(comparison)
    for figure in scalars:
        parts.append(figure.to_html(include_plotlyjs=False, full_html=False))
    if series:
        figure = make_subplots(
            rows=len(series),
            cols=1,
            subplot_titles=list(series),
            vertical_spacing=min(0.08, 0.3 / len(series)),
        )
        palette = [
            "#1f77b4",
            "#ff7f0e",
            "#2ca02c",
            "#d62728",
            "#9467bd",
            "#8c564b",
            "#e377c2",
            "#7f7f7f",
            "#bcbd22",
            "#17becf",
        ]
        for row, per_run in enumerate(series.values(), start=1):
            for index, run in enumerate(runs):
                points = per_run.get(run.id)
                if not points:
                    continue
                figure.add_trace(
                    go.Scatter(
                        x=[p[0] for p in points],
                        y=[p[1] for p in points],
                        mode="lines",
                        name=names[run.id],
                        legendgroup=run.id,
                        showlegend=row == 1,
                        line={"color": palette[index % len(palette)]},
                    ),
                    row=row,
                    col=1,
                )
            figure.update_xaxes(title_text="step", row=row, col=1)
        figure.update_layout(height=320 * len(series), margin={"t": 60})
        parts.append("<h2>Metric curves</h2>")
        parts.append(figure.to_html(include_plotlyjs=False, full_html=False))
    if plots:
        parts += ["<h2>Plots</h2>", *plots]
    parts.append("</body></html>")
    return "\n".join(parts)


def _numbers(values: list[Any]) -> list[float] | None:
    if any(isinstance(v, bool) for v in values):
        return None
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _scalar_figures(comparison: Comparison) -> list[Any]:
    """Grouped bars of the final metric values, and parallel coordinates of params + metrics."""
    import plotly.graph_objects as go

    labels = [_label(r) for r in comparison.runs]
    numeric = {
        (row.kind, row.key): values
        for row in comparison.rows
        if (values := _numbers(list(row.values))) is not None
    }
    metrics = {key: v for (kind, key), v in numeric.items() if kind == "metric"}
    figures = []
    if metrics:
        bars = go.Figure(
            [
                go.Bar(name=label, x=list(metrics), y=[v[i] for v in metrics.values()])
                for i, label in enumerate(labels)
            ]
        )
        bars.update_layout(barmode="group", title="Metrics (last value)", height=360)
        figures.append(bars)
    if len(labels) >= 2 and len(numeric) >= 2:
        dimensions = [
            {"label": f"{kind}s.{key}", "values": values} for (kind, key), values in numeric.items()
        ]
        figures.append(
            go.Figure(go.Parcoords(dimensions=dimensions)).update_layout(
                title="Params and metrics across runs", height=400
            )
        )
    return figures


def _table_html(comparison: Comparison) -> str:
    head = "".join(f"<th>{html.escape(_label(r))}</th>" for r in comparison.runs)
    lines = [f"<table><tr><th>key</th>{head}</tr>"]
    for row in comparison.rows:
        cells = "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row.values)
        name = html.escape(f"{row.kind}s.{row.key}")
        css = " class='differs'" if row.differs else ""
        lines.append(f"<tr{css}><td>{name}</td>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def format_value(value: Any) -> str:
    """A value for a table cell: numbers with up to 6 significant digits, missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@dataclass(frozen=True)
class Series:
    """A metric curve cut to at most ``buckets`` points: each bucket's last point, with the
    lowest and highest value in it, so a spike survives the downsampling."""

    steps: tuple[int, ...]
    values: tuple[float, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]
    total: int

    @property
    def sampled(self) -> bool:
        return len(self.steps) < self.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "values": list(self.values),
            "lows": list(self.lows),
            "highs": list(self.highs),
            "total": self.total,
            "sampled": self.sampled,
        }


def downsample(points: Sequence[tuple[int, float]], buckets: int = 2000) -> Series:
    """``points`` (in step order) as at most ``buckets`` points with min/max per bucket."""
    total = len(points)
    if total <= buckets:
        steps = tuple(s for s, _ in points)
        values = tuple(v for _, v in points)
        return Series(steps, values, values, values, total)
    size = total / buckets
    steps_out, values_out, lows, highs = [], [], [], []
    for index in range(buckets):
        chunk = points[int(index * size) : max(int((index + 1) * size), int(index * size) + 1)]
        chunk_values = [v for _, v in chunk]
        steps_out.append(chunk[-1][0])
        values_out.append(chunk[-1][1])
        lows.append(min(chunk_values))
        highs.append(max(chunk_values))
    return Series(tuple(steps_out), tuple(values_out), tuple(lows), tuple(highs), total)
