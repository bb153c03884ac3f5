"""Plots: the series and images stages declare under ``plots:``, drawn as one HTML page.

Like ``dvc plots show``: a CSV, TSV or JSON file is a table whose x column is ``step`` when
there is one, else the first column, and whose other numeric columns are lines; an image is
embedded as base64. plotly is imported only here, when a page is drawn.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd import plotlyjs
from mlcd.errors import TrackingError

IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Series:
    """A table of a plots file: the x column and the numeric y columns."""

    x: str
    xs: list[Any]
    ys: dict[str, list[float]]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, dict):  # DVC: {"train": [{...}, ...]}
            data = next((v for v in data.values() if isinstance(v, list)), [])
        return [row for row in data if isinstance(row, dict)]
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return list(csv.DictReader(text.splitlines(), delimiter=delimiter))


def read_series(path: Path) -> Series:
    """The table in a CSV, TSV or JSON plots file.

    Raises:
        TrackingError: the file cannot be read as a table with a numeric column.
    """
    try:
        rows = _rows(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise TrackingError(
            f"plots file {path} is not a readable table: {exc}",
            hint="write plots as CSV/TSV with a header row, or JSON: a list of objects",
        ) from exc
    columns = list(rows[0]) if rows else []
    if not columns:
        raise TrackingError(f"plots file {path} has no rows", hint="write at least one row")
    x = "step" if "step" in columns else columns[0]
    ys = {}
    for column in columns:
        if column == x:
            continue
        values = [_number(row.get(column)) for row in rows]
        if all(v is not None for v in values):
            ys[column] = [float(v) for v in values if v is not None]
    return Series(x, [row.get(x) for row in rows], ys)


def _figure(title: str, series: Mapping[str, Series]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for label, table in series.items():
        for column, values in table.ys.items():
            name = f"{label}: {column}" if len(series) > 1 else column
            figure.add_trace(go.Scatter(x=table.xs, y=values, mode="lines+markers", name=name))
    first = next(iter(series.values()))
    figure.update_layout(title=title, xaxis_title=first.x, template="plotly_white")
    return figure


def render_page(files: Mapping[str, Mapping[str, Path]], out: Path, plotly: str = "inline") -> Path:
    """Write the plots of ``{plot path: {revision label: file}}`` as one HTML page at ``out``.

    Args:
        files: each declared plot, with the file of each revision compared (one for ``show``).
        out: the HTML file to write.
        plotly: ``inline`` (plotly.js inside the page) or ``directory`` (one shared
            ``plotly.min.js`` beside it).

    Raises:
        UsageError: an unknown ``plotly`` mode.
        TrackingError: a plots file is not a readable table.
    """
    plotlyjs.check(plotly)
    parts = plot_parts(files)
    out.parent.mkdir(parents=True, exist_ok=True)
    plotlyjs.place(plotly, out.parent)
    body = "\n".join(parts) or "<p>No plots declared.</p>"
    out.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>mlcd plots</title>"
        f"{plotlyjs.script(plotly)}</head><body>\n{body}\n</body></html>\n",
        encoding="utf-8",
    )
    return out


def plot_parts(files: Mapping[str, Mapping[str, Path]]) -> list[str]:
    """HTML fragments, one per plot (plotly.js not included: the page loads it once).

    Raises:
        TrackingError: a plots file is not a readable table.
    """
    parts = []
    for name, revisions in files.items():
        suffix = Path(name).suffix.lower()
        if suffix in IMAGES:
            for label, path in revisions.items():
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(
                    f"<figure><img alt='{html.escape(name)}' src='data:{IMAGES[suffix]};base64,"
                    f"{data}'><figcaption>{html.escape(name)} ({html.escape(label)})"
                    "</figcaption></figure>"
                )
            continue
        series = {label: read_series(path) for label, path in revisions.items()}
        figure = _figure(name, series)
        parts.append(figure.to_html(full_html=False, include_plotlyjs=False))
    return parts


def runs_plot_files(
    store: Any, objects: Any, refs: Sequence[str], paths: Sequence[str], folder: Path
) -> dict[str, dict[str, Path]]:
    """``{plot path: {run label: file}}`` for several runs (see :func:`run_plot_files`)."""
    files: dict[str, dict[str, Path]] = {}
    for ref in refs:
        run_id, found = run_plot_files(store, objects, ref, paths, folder)
        for path, file in found.items():
            files.setdefault(path, {})[run_id[:8]] = file
    return files


def run_plot_files(
    store: Any, objects: Any, ref: str, paths: Sequence[str], folder: Path
) -> tuple[str, dict[str, Path]]:
    """``(run id, {plot path: file})``: the plots files a run wrote, fetched into ``folder``.

    Raises:
        NotFound: no such run.
    """
    from mlcd.digest import Digest
    from mlcd.store import runs as repo

    with store.read() as conn:
        run_id = str(repo.get_run(conn, ref)["id"])
        refs = repo.artifacts_of(conn, run_id)
    found: dict[str, Path] = {}
    for artifact in refs:
        if artifact.path in paths and artifact.path not in found and artifact.digest:
            dest = folder / run_id / artifact.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            objects.get_file(Digest.parse(artifact.digest), dest)
            found[artifact.path] = dest
    return run_id, found
