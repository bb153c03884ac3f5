"""The Markdown report: verdict first, ready to paste as a pull-request comment."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlcd.evaluate.metrics import HIGHER_IS_BETTER, metrics_for

if TYPE_CHECKING:
    from mlcd.evaluate.evaluation import Evaluation

_BUDGET_ROWS = ("latency_p50_ms", "latency_p99_ms", "size_mb", "calibration_error")


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "–"
    return f"{number:.{digits}g}" if abs(number) < 1000 else f"{number:,.0f}"


def _signed(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.4g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def headline(evaluation: Evaluation) -> str:
    """The verdict line."""
    alias = evaluation.verdict.alias or evaluation.against
    ref = evaluation.candidate.ref
    results = evaluation.verdict.results
    if not results:
        return f"## ➖ NO GATES: {ref} evaluated (no gates declared for `{alias}`)"
    if evaluation.passed:
        return f"## ✅ PASSED: {ref} meets all {len(results)} gates of `{alias}`"
    if evaluation.verdict.status == "inconclusive":
        unsure = len(evaluation.verdict.inconclusive)
        return (
            f"## ⚠️ INCONCLUSIVE: {ref} could not be judged on {unsure} of {len(results)} "
            f"gates of `{alias}` (latency noisier than the budget's margin; no gate failed)"
        )
    failed = len(evaluation.verdict.failures)
    return f"## ❌ FAILED: {ref} fails {failed} of {len(results)} gates of `{alias}`"


def render_markdown(evaluation: Evaluation) -> str:
    """The whole report as Markdown."""
    e = evaluation
    lines = [headline(e), ""]
    champion = (
        f"champion **{e.champion.ref}** (`{e.against}`)"
        if e.champion
        else f"no `{e.against}` yet (first model: relative gates pass)"
    )
    lines.append(
        f"Candidate **{e.candidate.ref}** vs {champion} on `{e.data_path}` "
        f"({e.rows:,} rows, digest `{e.data_digest[:12]}`), task {e.task}, label `{e.target}`."
    )
    if e.champion is not None and e.resamples:
        lines.append(
            f"Intervals: paired bootstrap, {e.resamples:,} resamples, "
            f"{int(e.confidence * 100)}% confidence."
        )
    lines.append("")
    if e.verdict.results:
        lines += ["### Gates", "", "| | gate | result |", "|---|---|---|"]
        for result in e.verdict.results:
            mark = {"passed": "✅", "inconclusive": "⚠️"}.get(result.status, "❌")
            detail = result.detail + (f" — {result.note}" if result.note else "")
            lines.append(f"| {mark} | `{_cell(result.gate.expression)}` | {_cell(detail)} |")
        lines.append("")
    lines += _metric_table(e)
    lines += _slice_table(e)
    lines += _window_table(e)
    lines += _budget_table(e)
    return "\n".join(lines).rstrip() + "\n"


def _metric_table(e: Evaluation) -> list[str]:
    rows = ["### Metrics", ""]
    if e.champion is None:
        rows += ["| metric | candidate |", "|---|---|"]
        for name in metrics_for(e.task):
            if name in e.candidate.metrics:
                rows.append(f"| {name} | {_num(e.candidate.metrics[name])} |")
        return [*rows, ""]
    level = int(e.confidence * 100)
    rows += [
        f"| metric | candidate | champion | delta | {level}% CI | P(better) |",
        "|---|---|---|---|---|---|",
    ]
    for name in metrics_for(e.task):
        cand = e.candidate.metrics.get(name)
        champ = e.champion.metrics.get(name)
        if cand is None and champ is None:
            continue
        delta = e.deltas.get(name)
        arrow = "↑" if HIGHER_IS_BETTER.get(name, True) else "↓"
        if delta is not None:
            rows.append(
                f"| {name} {arrow} | {_num(cand)} | {_num(champ)} | {_signed(delta.delta)} | "
                f"[{_signed(delta.low)}, {_signed(delta.high)}] | {delta.p_better:.0%} |"
            )
        else:
            rows.append(f"| {name} {arrow} | {_num(cand)} | {_num(champ)} | – | – | – |")
    return [*rows, ""]


def _slice_table(e: Evaluation) -> list[str]:
    if not e.slice_rows:
        return []
    names = [n for n in metrics_for(e.task)[:3]]
    header = (
        "| slice | rows | "
        + " | ".join(f"{n} (cand / champ)" if e.champion else n for n in names)
        + " |"
    )
    rows = ["### Slices", "", header, "|---|---|" + "---|" * len(names)]
    for slice_name, count in e.slice_rows.items():
        cells = []
        for metric in names:
            cand = e.candidate.slices.get(slice_name, {}).get(metric)
            if e.champion is None:
                cells.append(_num(cand))
            else:
                champ = e.champion.slices.get(slice_name, {}).get(metric)
                cells.append(f"{_num(cand)} / {_num(champ)}")
        rows.append(f"| {slice_name} | {count:,} | " + " | ".join(cells) + " |")
    return [*rows, ""]


def _window_table(e: Evaluation) -> list[str]:
    """Forward gain on the current data and backward transfer on each past window."""
    if not e.windows or e.champion is None:
        return []
    metrics = sorted({m for w in e.windows for m in w.get("deltas") or {}}) or [
        metrics_for(e.task)[0]
    ]
    level = int(e.confidence * 100)
    header = "| data | rows | " + " | ".join(
        f"{m}: cand / champ / delta [{level}% CI]" for m in metrics
    )
    rows = [
        "### No forgetting: forward gain and backward transfer",
        "",
        header + " |",
        "|---|---|" + "---|" * len(metrics),
    ]

    def cells(cand: dict[str, Any], champ: dict[str, Any], deltas: dict[str, Any]) -> str:
        out = []
        for m in metrics:
            a, b, d = cand.get(m), champ.get(m), deltas.get(m)
            diff = None if a is None or b is None else a - b
            ci = f" [{_signed(d['low'])}, {_signed(d['high'])}]" if d else ""
            out.append(f"{_num(a)} / {_num(b)} / {_signed(diff)}{ci}")
        return " | ".join(out)

    forward = {m: d.to_dict() for m, d in e.deltas.items()}
    rows.append(
        f"| current `{_cell(e.data_path)}` (forward) | {e.rows:,} | "
        + cells(e.candidate.metrics, e.champion.metrics, forward)
        + " |"
    )
    for w in e.windows:
        rows.append(
            f"| {_cell(str(w['name']))} | {int(w['rows']):,} | "
            + cells(w["candidate"], w["champion"], w.get("deltas") or {})
            + " |"
        )
    return [*rows, ""]


def _budget_table(e: Evaluation) -> list[str]:
    present = [n for n in _BUDGET_ROWS if n in e.candidate.metrics]
    if not present:
        return []
    timing = e.latency or {}
    own = (timing.get("candidate") or {}).get("noise") or {}
    theirs = (timing.get("champion") or {}).get("noise") or {}

    def cell(metrics: dict[str, float], noise: dict[str, float], name: str) -> str:
        spread = noise.get(name)
        return _num(metrics.get(name)) + (f" ±{_num(spread / 2, 2)}" if spread is not None else "")

    if e.champion is None:
        rows = ["### Budgets", "", "| measure | candidate |", "|---|---|"]
        rows += [f"| {n} | {cell(e.candidate.metrics, own, n)} |" for n in present]
    else:
        rows = ["### Budgets", "", "| measure | candidate | champion |", "|---|---|---|"]
        rows += [
            f"| {n} | {cell(e.candidate.metrics, own, n)} | {cell(e.champion.metrics, theirs, n)} |"
            for n in present
        ]
    if timing:
        paired = timing.get("paired_noise") or {}
        rows += [
            "",
            f"Latency: {timing.get('rows')} single rows per model in {timing.get('repetitions')} "
            f"blocks after a warm-up, native pools at {timing.get('threads')} thread(s) as "
            "`mlcd serve` runs them; CPU time of the predicting thread (wall clock: "
            f"p50 {_num(e.candidate.metrics.get('latency_p50_wall_ms'))} ms, "
            f"p99 {_num(e.candidate.metrics.get('latency_p99_wall_ms'))} ms). ± is half the "
            "spread between blocks"
            + (
                f"; the candidate and the champion alternate block by block, and their p99 "
                f"difference spreads by {_num(paired.get('latency_p99_ms'), 2)} ms."
                if paired
                else "."
            ),
        ]
    return [*rows, ""]
