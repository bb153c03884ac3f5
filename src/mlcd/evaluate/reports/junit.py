"""JUnit XML: one test case per gate, so CI systems show gates in their test tabs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlcd.evaluate.evaluation import Evaluation


def render_junit(evaluation: Evaluation) -> str:
    """The JUnit XML document (a ``testsuites`` root with one ``testsuite``)."""
    e = evaluation
    alias = e.verdict.alias or e.against
    results = e.verdict.results
    failures = len(e.verdict.failures)
    root = ET.Element(
        "testsuites",
        name="mlcd gates",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(len(e.verdict.inconclusive)),
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"mlcd.gates.{e.model}.{alias}",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(len(e.verdict.inconclusive)),
        skipped="0",
        time="0",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("candidate", e.candidate.ref),
        ("champion", e.champion.ref if e.champion else ""),
        ("data", e.data_path),
        ("data_digest", e.data_digest),
        ("rows", str(e.rows)),
    ):
        ET.SubElement(properties, "property", name=key, value=value)
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"mlcd.gates.{e.model}.{alias}",
            name=result.gate.expression,
            time="0",
        )
        text = result.detail + (f"\n{result.note}" if result.note else "")
        if result.passed:
            ET.SubElement(case, "system-out").text = text
        elif result.inconclusive:  # not judged: neither a pass nor a failure
            error = ET.SubElement(case, "error", message=result.detail, type="GateInconclusive")
            error.text = text
        else:
            failure = ET.SubElement(case, "failure", message=result.detail, type="GateFailed")
            failure.text = text
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
