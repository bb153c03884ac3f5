"""``mlcd monitor``: drift, data quality and live performance of a model; exit 1 when off."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlcd.cli.output import emit, table
from mlcd.cli.step_progress import step_progress

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def monitor(
    model: Annotated[str, typer.Argument(help="The model: NAME, NAME@ALIAS or NAME/VERSION.")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Window start: a duration back from now (1h, 7d) or a date. "
            "Default: monitor.window in mlcd.yaml.",
        ),
    ] = None,
    last: Annotated[
        int | None, typer.Option("--last", help="The window is the last N predictions.")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Reference data (CSV/Parquet) instead of the version's stored profile.",
        ),
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option("--current", help="Current data (CSV/Parquet) instead of the prediction log."),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report-dir", help="Write report.html, report.json and report.md here."),
    ] = None,
    plotly: Annotated[
        str,
        typer.Option(
            "--plotly", help="HTML reports: inline, or directory (one shared plotly.min.js)."
        ),
    ] = "inline",
    no_alert: Annotated[
        bool, typer.Option("--no-alert", help="Do not alert even when a threshold is crossed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare recent predictions with the reference: drift, quality, performance.

    Exit codes: 0 within thresholds; 1 drift, a quality breach or performance decay
    (alerts sent); 2 bad arguments or configuration; 3 failure to read data or the store.
    """
    from mlcd import plotlyjs
    from mlcd.errors import CheckFailed
    from mlcd.monitor.alerts import raise_alert
    from mlcd.monitor.report import plain, to_json, write_reports
    from mlcd.monitor.run import record_pass, run_monitor
    from mlcd.project import Project

    plotlyjs.check(plotly)
    with Project.open() as project, step_progress(f"monitoring {model}", not as_json) as status:
        report = run_monitor(
            config=project.config,
            root=project.root,
            target=model,
            store=project.store,
            objects=project.objects,
            since=since,
            last=last,
            reference=reference,
            current=current,
            progress=status,
        )
        files = {}
        if report_dir is not None:
            status("writing reports")
            files = {k: str(v) for k, v in write_reports(report, report_dir, plotly).items()}
        alert = None
        digest = project.objects.put_bytes(to_json(report).encode())
        record_pass(project.store, report, str(digest))
        if report.failed and not no_alert:
            status("alerting")
            subject = report.subject
            alert = raise_alert(
                project.store,
                project.config.monitor.alerts,
                model=subject.model,
                version=subject.version,
                summary=f"mlcd monitor: {subject.model} crossed its thresholds",
                reasons=report.failures,
                report_digest=str(digest),
            )
    data = plain(report.to_dict())
    data["reports"] = files
    data["alert"] = alert.to_dict() if alert else None

    def render(out: Any) -> None:
        drift = report.drift
        out.print(
            f"[bold]{report.subject.model}[/]"
            + (f" v{report.subject.version}" if report.subject.version else "")
            + f": {report.summary.rows} rows ({report.summary.rejected} rejected), "
            f"{len(drift.drifted)}/{len(drift.tested)} features drifted ({drift.share:.0%}, "
            f"threshold {drift.share_threshold:.0%})"
        )
        rows = [
            [
                f.name + (" (prediction)" if f.role == "prediction" else ""),
                f.method,
                "—" if f.score is None else f"{f.score:.4g}",
                f"{f.threshold:g}",
                f.status,
            ]
            for f in [*drift.features, *drift.predictions]
        ]
        out.print(table("drift", ["column", "method", "score", "threshold", "status"], rows))
        performance = report.performance
        if performance is not None and performance.overall:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in performance.overall.items() if k != "n")
            out.print(f"performance on {performance.labels} labels: {metrics}")
        for warning in report.warnings:
            out.print(f"[yellow]warning:[/] {warning}")
        for note in report.notes:
            out.print(f"[dim]note:[/] {note}")
        for failure in report.failures:
            out.print(f"[red]✗[/] {failure}")
        if alert is not None and alert.failed:
            for url, why in alert.failed.items():
                out.print(f"[red]alert not delivered[/] to {url}: {why}")
        for kind, path in files.items():
            out.print(f"[dim]{kind}:[/] {path}")
        if not report.failed and drift.features and not drift.tested:
            out.print("[yellow]not enough data[/] to judge drift; no threshold crossed")
        elif not report.failed:
            out.print("[green]within thresholds[/]")

    emit(data, as_json, render)
    if report.failed:
        raise CheckFailed(
            f"monitoring of '{model}' crossed {len(report.failures)} threshold(s)",
            hint="read the report (--report-dir DIR) for the columns and metrics involved",
        )


def register(app: typer.Typer) -> None:
    """Attach ``mlcd monitor`` to the root app."""
    app.command("monitor")(monitor)
