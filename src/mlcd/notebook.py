"""Small self-contained HTML fragments for Jupyter's ``_repr_html_`` (every value escaped)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

_STYLE = (
    "<style>.mlcd-nb table{border-collapse:collapse;font-size:13px}"
    ".mlcd-nb td,.mlcd-nb th{border:1px solid #ddd;padding:2px 8px;text-align:left}"
    ".mlcd-nb .pass{color:#1b5e20;font-weight:bold}.mlcd-nb .fail{color:#b00020;font-weight:bold}"
    "</style>"
)


def cell(value: Any) -> str:
    """One escaped table cell: floats to 6 significant digits, missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    return html.escape(str(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table of escaped cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fragment(title: str, passed: bool | None, lines: Iterable[str], *tables: str) -> str:
    """A titled block: a PASS/FAIL badge when ``passed`` is known, escaped lines, then tables."""
    badge = ""
    if passed is not None:
        badge = " <span class='pass'>PASS</span>" if passed else " <span class='fail'>FAIL</span>"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    listing = f"<ul>{items}</ul>" if items else ""
    return (
        f"<div class='mlcd-nb'>{_STYLE}<h4>{html.escape(title)}{badge}</h4>"
        f"{listing}{''.join(tables)}</div>"
    )
