"""Reports of checked contracts: Markdown for people and pull requests, JUnit for CI."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from mlcd.contracts.validate import ContractReport


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ContractReport) -> str:
    """The verdict, every check, and sample failing rows."""
    mark = "✅ PASSED" if report.passed else "❌ FAILED"
    lines = [
        f"## {mark}: data '{report.name}'",
        "",
        f"`{report.path}`, {report.rows:,} rows; {len(report.errors)} error(s), "
        f"{len(report.warnings)} warning(s).",
        "",
        "| | check | column | failing rows | detail |",
        "|---|---|---|---|---|",
    ]
    for result in report.results:
        icon = "✅" if result.passed else ("⚠️" if result.level == "warn" else "❌")
        lines.append(
            f"| {icon} | {result.check} | {_cell(result.column or '')} | "
            f"{result.failing_rows:,} | {_cell(result.message if not result.passed else 'ok')} |"
        )
    for result in report.results:
        if result.passed or not result.sample:
            continue
        lines += ["", f"Sample of failing rows ({result.check}, {result.column}):", ""]
        columns = list(result.sample[0])
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in result.sample:
            lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def render_junit(reports: list[ContractReport]) -> str:
    """One test suite per dataset, one test case per check (warnings are skipped, not failed)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<testsuites>"]
    for report in reports:
        out.append(
            f'  <testsuite name={quoteattr("data." + report.name)} tests="{len(report.results)}" '
            f'failures="{len(report.errors)}" skipped="{len(report.warnings)}">'
        )
        for result in report.results:
            name = quoteattr(f"{result.check} {result.column or ''}".strip())
            out.append(f"    <testcase classname={quoteattr(report.path)} name={name}>")
            if not result.passed and result.level == "error":
                out.append(
                    f"      <failure message={quoteattr(result.message)}>"
                    f"{escape(str(result.sample))}</failure>"
                )
            elif not result.passed:
                out.append(f"      <skipped message={quoteattr('warning: ' + result.message)}/>")
            out.append("    </testcase>")
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"
