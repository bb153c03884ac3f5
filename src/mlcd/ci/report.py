"""The two files ``mlcd ci`` writes: a Markdown pull-request comment and a JUnit XML file.

Each model's section is the evaluation report of ``mlcd.evaluate.reports`` (gate table,
metric deltas with bootstrap intervals, slices, budgets); this module adds what only CI knows
around it: the overall verdict, the pipeline's stages, the caches and the diff against the
base revision.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from mlcd.evaluate.reports import render_junit as render_gate_junit
from mlcd.evaluate.reports import render_markdown as render_gate_markdown

if TYPE_CHECKING:
    from mlcd.ci.result import CiResult, ModelCheck

#: GitHub refuses comments over 65,536 characters; stay below with room for a notice.
MAX_MARKDOWN = 60_000

_STAGE_ICONS = {
    "ran": "✅",
    "cached": "♻️",
    "pulled": "♻️",
    "skipped": "➖",
    "failed": "❌",
    "blocked": "⊘",
}


def write_text(path: Path, text: str) -> None:
    """Write a report atomically (a reader never sees half a file), creating its folder.

    A report becomes a pull-request comment or a CI artefact: secrets (a remote's password,
    an error quoting a URL) are masked here, for every report kind.
    """
    from mlcd.secrets import known_secrets, mask_text

    text = mask_text(text, known_secrets())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _demote(markdown: str) -> str:
    """Headings one level down, so an embedded report nests under this one's sections."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


# ---------------------------------------------------------------- Markdown
def verdict_line(result: CiResult) -> str:
    """The first line of the comment: the overall verdict and why."""
    errors = result.all_errors
    if errors:
        first = errors[0]
        return f"## ⚠️ mlcd ci could not finish: {first.step}: {first.error.message}"
    failed = [s.stage for s in result.failed_stages if s.outcome == "failed"]
    if failed:
        return f"## ❌ mlcd ci failed: stage(s) {', '.join(f'`{s}`' for s in failed)} failed"
    if result.gate_failures:
        parts = []
        for check in result.gate_failures:
            assert check.evaluation is not None
            verdict = check.evaluation.verdict
            parts.append(
                f"{check.ref} fails {len(verdict.failures)} of {len(verdict.results)} gates "
                f"of `{verdict.alias}`"
            )
        return "## ❌ mlcd ci failed: " + "; ".join(parts)
    if result.gate_inconclusive:
        unsure = []
        for check in result.gate_inconclusive:
            assert check.evaluation is not None
            verdict = check.evaluation.verdict
            unsure.append(
                f"{check.ref}: {len(verdict.inconclusive)} of {len(verdict.results)} gates of "
                f"`{verdict.alias}` too noisy to judge"
            )
        return "## ⚠️ mlcd ci inconclusive (no gate failed): " + "; ".join(unsure)
    promoted = [m.ref for m in result.models if m.promoted]
    if promoted:
        return f"## ✅ mlcd ci passed: {', '.join(promoted)} promoted to `champion`"
    if not result.models:
        return "## ✅ mlcd ci passed: the pipeline is up to date (no model to gate)"
    return "## ✅ mlcd ci passed: " + "; ".join(_model_phrase(m) for m in result.models)


def _model_phrase(check: ModelCheck) -> str:
    if check.unchanged:
        return f"{check.ref} is the champion already (model unchanged)"
    if check.evaluation is None:
        return check.ref
    verdict = check.evaluation.verdict
    if not verdict.results:
        return f"{check.ref} evaluated (no gates declared for `{verdict.alias}`)"
    return f"{check.ref} meets all {len(verdict.results)} gates of `{verdict.alias}`"


def _model_bullet(check: ModelCheck) -> str:
    if check.error is not None:
        hint = f" — {check.error.error.hint}" if check.error.error.hint else ""
        return f"- ⚠️ **{check.ref}**: {check.error.error.message}{hint}"
    novelty = "new version" if check.created else "version registered before"
    if check.unchanged:
        return f"- ➖ **{check.ref}** is the `champion` already: the model did not change"
    if check.evaluation is None:
        return f"- **{check.ref}**: not evaluated"
    evaluation = check.evaluation
    verdict = evaluation.verdict
    against = (
        f"champion {evaluation.champion.ref}"
        if evaluation.champion is not None
        else "no champion yet"
        + (" (relative gates pass for a first model)" if verdict.results else "")
    )
    total = len(verdict.results)
    if not total:
        mark, what = "➖", f"has no gates to meet (none declared for `{verdict.alias}`)"
    elif verdict.passed:
        mark, what = "✅", f"meets all {total} gates of `{verdict.alias}`"
    elif verdict.status == "inconclusive":
        mark = "⚠️"
        what = f"could not be judged on {len(verdict.inconclusive)} of {total} gates of `{verdict.alias}`"
    else:
        mark, what = "❌", f"fails {len(verdict.failures)} of {total} gates of `{verdict.alias}`"
    line = f"- {mark} **{check.ref}** ({novelty}) {what}, against {against}"
    for failure in evaluation.verdict.failures:
        line += f"\n  - ❌ `{failure.gate.expression}`: {failure.detail}"
    for unsure in evaluation.verdict.inconclusive:
        line += f"\n  - ⚠️ `{unsure.gate.expression}`: {unsure.detail}"
    if check.promoted:
        line += "\n  - 🚀 promoted to `champion` (the gates ran again at promotion)"
    elif check.promotion_note:
        line += f"\n  - {check.promotion_note}"
    return line


def _context(result: CiResult) -> list[str]:
    if result.commit:
        branch = f" on `{result.branch}`" if result.branch else ""
        line = f"Commit `{result.commit[:10]}`{branch}"
    else:
        line = "Outside git (no commit recorded)"
    if result.options.base is not None:
        base = f" (`{result.base_commit[:10]}`)" if result.base_commit else ""
        line += f", compared with `{result.options.base}`{base}"
    mode = "promotion run (`--promote`)" if result.options.promote else "check run"
    return [f"{line}; {mode}."]


def _pipeline_section(result: CiResult) -> list[str]:
    lines = ["### Pipeline", ""]
    if result.stages:
        ran = sum(1 for s in result.stages if s.outcome == "ran")
        restored = sum(1 for s in result.stages if s.outcome in ("cached", "pulled"))
        lines.append(
            f"{len(result.stages)} stage(s): {ran} ran, {restored} restored from cache, "
            f"{len(result.stages) - ran - restored} up to date or not run."
        )
        lines += ["", "| | stage | outcome | time |", "|---|---|---|---|"]
        from mlcd.ci.result import STAGE_HOW

        for stage in result.stages:
            how = STAGE_HOW.get(stage.outcome, stage.outcome)
            if stage.detail:
                how += f": {stage.detail}"
            lines.append(
                f"| {_STAGE_ICONS.get(stage.outcome, '')} | `{stage.stage}` | {_cell(how)} | "
                f"{stage.duration_s:.1f}s |"
            )
    elif result.run is None:
        lines.append("The pipeline did not run.")
    else:
        lines.append("No stages declared.")
    lines.append("")
    tails = {s.stage: s for s in (result.run.stages if result.run else [])}
    for stage in result.failed_stages:
        failed = tails.get(stage.stage)
        if stage.outcome == "failed" and failed is not None and failed.log_tail:
            fence = "~~~~"  # a log may contain backquote fences itself
            lines += [
                f"<details><summary>last lines of the <code>{stage.stage}</code> log</summary>",
                "",
                fence,
                failed.log_tail.rstrip().replace(fence, "~ ~ ~ ~"),
                fence,
                "</details>",
                "",
            ]
    if result.failed_stages:
        lines += ["No model was evaluated: the pipeline did not finish.", ""]
    if result.remote is not None:
        caches = [f"Remote `{result.remote}`:"]
        if result.pulled is not None:
            caches.append(
                f"pulled {result.pulled.objects_copied} object(s) and "
                f"{result.pulled.entries_copied} run-cache entr(y/ies)"
                + (
                    f", restored {len(result.pulled.restored)} path(s)"
                    if result.pulled.restored
                    else ""
                )
                + ";"
            )
        if result.pushed is not None:
            caches.append(
                f"pushed {result.pushed.objects_copied} object(s) and "
                f"{result.pushed.entries_copied} run-cache entr(y/ies)."
            )
        lines += [" ".join(caches), ""]
    return lines


def render_markdown(result: CiResult) -> str:
    """The whole pull-request comment: verdict first, then models, pipeline, diff, notes."""
    lines = [verdict_line(result), ""]
    lines += [_model_bullet(m) for m in result.models]
    for error in result.errors:
        hint = f" — {error.error.hint}" if error.error.hint else ""
        lines.append(f"- ⚠️ **{error.step}**: {error.error.message}{hint}")
    if result.models or result.errors:
        lines.append("")
    lines += [*_context(result), ""]
    lines += _pipeline_section(result)
    for check in result.models:
        if check.evaluation is not None:
            lines += [_demote(render_gate_markdown(check.evaluation)), ""]
    if result.diff is not None:
        lines += [_demote(result.diff.to_markdown()), ""]
    elif result.options.base is None:
        lines += ["_No `--base` given: params and metrics were not compared._", ""]
    if result.notes:
        lines += ["### Notes", "", *[f"- {note}" for note in result.notes], ""]
    lines.append("<sub>written by `mlcd ci`</sub>")
    text = "\n".join(lines).rstrip() + "\n"
    if len(text) > MAX_MARKDOWN:
        notice = (
            "\n\n_… the report was cut here to fit a comment; the JUnit file has every gate._\n"
        )
        text = text[: MAX_MARKDOWN - len(notice)].rsplit("\n", 1)[0] + notice
    return text


# ---------------------------------------------------------------- JUnit XML
def _suite(root: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(root, "testsuite", name=name, errors="0", skipped="0", time="0")


def _case(suite: ET.Element, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def _pipeline_suite(root: ET.Element, result: CiResult) -> None:
    from mlcd.ci.result import STAGE_HOW

    if not result.stages:
        return
    suite = _suite(root, "mlcd.pipeline")
    log_tails = {s.stage: s.log_tail for s in (result.run.stages if result.run else [])}
    for stage in result.stages:
        case = _case(suite, "mlcd.pipeline", stage.stage, stage.duration_s)
        how = STAGE_HOW.get(stage.outcome, stage.outcome)
        if stage.outcome == "failed":
            failure = ET.SubElement(
                case, "failure", message=stage.detail or "failed", type="StageFailed"
            )
            failure.text = log_tails.get(stage.stage) or stage.detail or ""
        elif stage.outcome == "blocked":
            ET.SubElement(case, "skipped", message=how)
        else:
            ET.SubElement(case, "system-out").text = how


def _model_suites(root: ET.Element, check: ModelCheck) -> None:
    classname = f"mlcd.gates.{check.name}.champion"
    if check.evaluation is not None:
        # The evaluation's own JUnit document: one testcase per gate.
        document = ET.fromstring(render_gate_junit(check.evaluation))
        root.extend(document.findall("testsuite"))
    elif check.unchanged:
        suite = _suite(root, classname)
        case = _case(suite, classname, f"{check.ref} is the champion already")
        ET.SubElement(case, "system-out").text = "the model did not change: nothing to gate"
    if check.error is not None:
        suite = _suite(root, f"mlcd.ci.{check.name}")
        case = _case(suite, f"mlcd.ci.{check.name}", "register and evaluate")
        error = check.error.error
        element = ET.SubElement(case, "error", message=error.message, type=type(error).__name__)
        element.text = error.message + (f"\nhint: {error.hint}" if error.hint else "")


def _promotion_suite(root: ET.Element, result: CiResult) -> None:
    if not result.options.promote or not result.models:
        return
    suite = _suite(root, "mlcd.promotion")
    for check in result.models:
        case = _case(suite, "mlcd.promotion", f"{check.name} -> champion")
        if check.promoted:
            ET.SubElement(case, "system-out").text = f"{check.ref} promoted to champion"
        else:
            note = check.promotion_note or (
                "the model did not change" if check.unchanged else "not promoted"
            )
            ET.SubElement(case, "skipped", message=note)


def _error_suite(root: ET.Element, result: CiResult) -> None:
    if not result.errors:
        return
    suite = _suite(root, "mlcd.ci")
    for step in result.errors:
        case = _case(suite, "mlcd.ci", step.step)
        element = ET.SubElement(
            case, "error", message=step.error.message, type=type(step.error).__name__
        )
        element.text = step.error.message + (
            f"\nhint: {step.error.hint}" if step.error.hint else ""
        )


def _count(root: ET.Element) -> None:
    """Fill the tests/failures/errors/skipped counts of every suite and of the root."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
            "skipped": sum(1 for c in cases if c.find("skipped") is not None),
        }
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))


def render_junit(result: CiResult) -> str:
    """The JUnit XML document: a suite for the stages, one per model's gates, promotion, errors."""
    root = ET.Element("testsuites", name="mlcd ci")
    _error_suite(root, result)
    _pipeline_suite(root, result)
    for check in result.models:
        _model_suites(root, check)
    _promotion_suite(root, result)
    _count(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
