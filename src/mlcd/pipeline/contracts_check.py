"""Data contracts in a run: what a stage reads is checked before it runs, what it writes after.

A violation fails the stage like a failing command: its outputs are not stored, ``mlcd.lock``
and the run cache keep the previous entry, dependents are not run. The report (Markdown and
JSON, with the failing checks, row counts and sample rows) goes to
``.mlcd/reports/data/<stage>/``; warnings are reported there and in the stage's log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mlcd.contracts import Contract, ContractReport, validate_file
from mlcd.contracts.report import render_markdown
from mlcd.pipeline.stage import StageSpec


def check_stage(
    root: Path, spec: StageSpec, role: str, skip: Iterable[str] = ()
) -> list[ContractReport]:
    """Check the stage's contracts of ``role`` (``dep`` or ``out``), but for paths in ``skip``
    (deps another stage of the pipeline writes: that stage checked them)."""
    skipped = set(skip)
    reports = []
    for item in spec.contracts:
        if item["role"] != role or item["path"] in skipped:
            continue
        contract = Contract.model_validate(item["contract"])
        path = str(item["path"])
        reports.append(validate_file(root / path, contract, str(item["name"]), path, root))
    return reports


def write_reports(state_dir: Path, stage: str, reports: list[ContractReport]) -> Path:
    """Markdown and JSON reports of a stage's checks; returns the Markdown file."""
    folder = state_dir / "reports" / "data" / stage
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(
        json.dumps([r.to_dict() for r in reports], indent=2, default=str) + "\n", encoding="utf-8"
    )
    markdown = folder / "report.md"
    markdown.write_text("\n".join(render_markdown(r) for r in reports), encoding="utf-8")
    return markdown


def failure_message(reports: list[ContractReport], report: Path, root: Path) -> str:
    """One message naming each failing dataset, check, column and row count."""
    failing = [r for r in reports if not r.passed]
    parts = [r.summary() for r in failing]
    where = report.relative_to(root) if report.is_relative_to(root) else report
    return "data contract failed: " + " | ".join(parts) + f" (report: {where})"


def log_lines(reports: list[ContractReport]) -> list[str]:
    """What goes to the stage's log: one line per dataset, warnings included."""
    return [f"mlcd: {r.summary()}" for r in reports]


def validate_declared(
    root: Path, data: dict[str, Contract], targets: list[str]
) -> list[ContractReport]:
    """``mlcd data validate``: every declared dataset, or those named (by name or path).

    Raises:
        UsageError: a target is neither a declared name nor a declared path.
    """
    from mlcd.errors import UsageError
    from mlcd.pipeline.stage import resolve_path

    by_path = {resolve_path(root, ".", c.path)[0]: n for n, c in data.items()}
    chosen: list[str] = []
    for target in targets:
        if target in data:
            chosen.append(target)
            continue
        relative = resolve_path(root, ".", str(Path.cwd() / target))[0]
        if relative in by_path:
            chosen.append(by_path[relative])
            continue
        raise UsageError(
            f"'{target}' is not a dataset declared under data: in mlcd.yaml",
            hint=f"declared: {', '.join(sorted(data)) or 'none'} (name or path)",
        )
    names = chosen or list(data)
    return [
        validate_file(root / data[n].path, data[n], n, data[n].path, root)
        for n in dict.fromkeys(names)
    ]
