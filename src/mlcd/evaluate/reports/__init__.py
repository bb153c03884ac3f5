"""Evaluation reports: Markdown (pull-request comments), HTML, JSON and JUnit XML."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd import plotlyjs
from mlcd.evaluate.reports.html import render_html
from mlcd.evaluate.reports.junit import render_junit
from mlcd.evaluate.reports.markdown import headline, render_markdown

if TYPE_CHECKING:
    from mlcd.evaluate.evaluation import Evaluation

__all__ = [
    "FORMATS",
    "headline",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "write_reports",
]

#: format -> file name in the report folder
FORMATS = {
    "md": "report.md",
    "html": "report.html",
    "json": "report.json",
    "junit": "junit.xml",
}


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def render_json(evaluation: Evaluation) -> str:
    """The evaluation as canonical JSON (sorted keys: equal evaluations, equal bytes)."""
    return json.dumps(_clean(evaluation.to_dict()), indent=2, sort_keys=True) + "\n"


def write_reports(
    evaluation: Evaluation,
    directory: str | os.PathLike[str],
    formats: tuple[str, ...] = tuple(FORMATS),
    plotly: str = "inline",
) -> dict[str, Path]:
    """Write the reports into ``directory``; returns ``{format: path}``.

    ``plotly``: ``inline`` (each HTML page self-contained) or ``directory`` (one shared
    ``plotly.min.js`` in ``directory``).
    """
    renderers: dict[str, Callable[[Evaluation], str]] = {
        "md": render_markdown,
        "html": functools.partial(render_html, plotly=plotlyjs.check(plotly)),
        "json": render_json,
        "junit": render_junit,
    }
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        path = folder / FORMATS[fmt]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(renderers[fmt](evaluation), encoding="utf-8")
        os.replace(tmp, path)
        written[fmt] = path
    if "html" in formats:
        plotlyjs.place(plotly, folder)
    return written
