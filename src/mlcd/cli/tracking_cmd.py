"""Tracking commands: ``runs list|show|compare|lineage`` and ``diff``.

Argument parsing and rendering only; the queries live in ``mlcd.tracking``. Heavy imports
(SQLAlchemy, plotly) happen inside the command functions, so ``mlcd --help`` stays light.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mlcd.cli.output import console, emit
from mlcd.cli.output import table as _rich_table
from mlcd.cli.runs_view import _duration, _when, run_row

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
runs_app = typer.Typer(help="Find, inspect and compare tracked runs.", no_args_is_help=True)

#: Metric/param columns shown by ``runs list`` besides those the filter and order name.
_EXTRA_COLUMNS = 4


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Any:
    """A compact table (no vertical rules, cells never wrapped)."""
    from rich import box

    result = _rich_table(title, columns, rows)
    result.box = box.SIMPLE_HEAD
    for column in result.columns:
        column.no_wrap = True
    return result


def _print(out: Any, renderable: Any) -> None:
    # Piped output is not cut to 80 columns: a log or a CI page is read whole.
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.console import Console

    Console(width=250, highlight=False, file=out.file).print(renderable)


def _cell(value: Any) -> str:
    from mlcd.tracking.compare import format_value

    return format_value(value)


@runs_app.command("list")
def list_runs(
    filter: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            help="e.g. \"metrics.roc_auc > 0.9 and params.model = 'gbm'\" (see docs/tracking.md).",
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option("--order-by", "-o", help="e.g. 'metrics.roc_auc desc' (default: newest)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most N runs.", min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List runs, pipeline and API runs alike, filtered and ordered in the database.

    Exit 2 for a malformed filter (the message shows where).
    """
    from mlcd.project import Project
    from mlcd.tracking.filter import fields_of, parse_filter, parse_order
    from mlcd.tracking.query import search

    node = parse_filter(filter)
    order = parse_order(order_by)
    with Project.open(local_store=True) as project, project.store.read() as conn:
        records = search(conn, node, order_by, limit)
    if as_json:
        emit([r.to_dict() for r in records], True)
        return
    columns = list(
        dict.fromkeys(
            str(f)
            for f in [*fields_of(node), *(k.field for k in order)]
            if f.namespace in ("metrics", "params")
        )
    )
    counts: dict[str, int] = {}
    for record in records:
        for key in record.metrics:
            counts[f"metrics.{key}"] = counts.get(f"metrics.{key}", 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    columns += [key for key, _ in ranked if key not in columns][:_EXTRA_COLUMNS]

    def value(record: Any, column: str) -> Any:
        namespace, _, key = column.partition(".")
        return getattr(record, namespace).get(key)

    rows = [run_row(r, (_cell(value(r, c)) for c in columns)) for r in records]

    def render(out: Any) -> None:
        if not records:
            out.print("no runs match" if filter else "no runs yet: 'mlcd run' or mlcd.start_run()")
            return
        # metrics by their bare name (the common case), params with their prefix
        names = [c.removeprefix("metrics.") for c in columns]
        headers = ["run", "name", "kind", "status", "started", "took", *names]
        _print(out, table(None, headers, rows))

    emit(None, False, render)


@runs_app.command("show")
def show(
    run: Annotated[str, typer.Argument(help="Run id, id prefix (4+ characters) or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run: params, metrics (latest value and history), tags, artifacts, stages."""
    from mlcd.project import Project
    from mlcd.tracking.query import describe

    with Project.open(local_store=True) as project, project.store.read() as conn:
        info = describe(conn, run)

    def render(out: Any) -> None:
        title = f"run {info['id']}" + (f" ({info['name']})" if info["name"] else "")
        out.print(f"[bold]{title}[/]")
        commit = info["git_commit"] or "-"
        dirty = " (dirty)" if info["git_dirty"] else ""
        out.print(
            f"  {info['kind']} · {info['status']} · started {_when(info['started_at'])} · "
            f"{_duration(info['duration']) or 'running'} · user {info['user'] or '-'} · "
            f"commit {commit[:12]}{dirty}"
        )
        if info["parent_id"]:
            out.print(f"  parent {info['parent_id']}")
        if info["params"]:
            out.print(
                table("params", ["key", "value"], [[k, v] for k, v in info["params"].items()])
            )
        if info["metrics"]:
            rows = [
                [
                    k,
                    _cell(m["value"]),
                    m.get("step"),
                    m.get("points", 0),
                    _cell(m.get("min")),
                    _cell(m.get("max")),
                ]
                for k, m in info["metrics"].items()
            ]
            _print(out, table("metrics", ["key", "latest", "step", "points", "min", "max"], rows))
        if info["tags"]:
            _print(out, table("tags", ["key", "value"], [[k, v] for k, v in info["tags"].items()]))
        if info["stages"]:
            rows = [
                [s["stage"], s["outcome"], _duration(s.get("duration_s")), s.get("reason") or ""]
                for s in info["stages"]
            ]
            _print(out, table("stages", ["stage", "outcome", "duration", "reason"], rows))
        if info["artifacts"]:
            rows = [
                [a["role"], a["stage"] or "", a["path"], a["digest"][:12]]
                for a in info["artifacts"]
            ]
            _print(out, table("files", ["role", "stage", "path", "digest"], rows))
        for child in info["children"]:
            out.print(f"  child run {child['id'][:8]} {child['name'] or ''} ({child['status']})")

    emit(info, as_json, render)


@runs_app.command("compare")
def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more runs (id, prefix or name).")],
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a page with the metric curves (plotly) here."),
    ] = None,
    only_diff: Annotated[
        bool, typer.Option("--only-diff", help="Show only params and metrics that differ.")
    ] = False,
    plotly: Annotated[
        str,
        typer.Option("--plotly", help="With --html: inline, or directory (shared plotly.min.js)."),
    ] = "inline",
    as_json: JsonOpt = False,
) -> None:
    """Params and metrics of runs side by side; --html adds charts, curves and declared plots."""
    import tempfile

    from mlcd import plotlyjs
    from mlcd.project import Project
    from mlcd.tracking.compare import compare_runs, curves_html, metric_curves
    from mlcd.tracking.plots import plot_parts, runs_plot_files

    plotlyjs.check(plotly)
    with Project.open(local_store=True) as project:
        with project.store.read() as conn:
            comparison = compare_runs(conn, runs)
            curves = metric_curves(conn, [r.id for r in comparison.runs]) if html else {}
        if html is not None:
            with tempfile.TemporaryDirectory() as folder:
                files = runs_plot_files(
                    project.store, project.objects, [r.id for r in comparison.runs],
                    _declared_plots(project.root), Path(folder),
                )  # fmt: skip
                page = curves_html(comparison, curves, plot_parts(files), plotly)
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(page, encoding="utf-8")
            plotlyjs.place(plotly, html.parent)
    rows = [row for row in comparison.rows if row.differs or not only_diff]
    data = comparison.to_dict()
    data["rows"] = [row.to_dict() for row in rows]
    if html is not None:
        data["html"] = str(html)

    def render(out: Any) -> None:
        headers = ["", *(f"{r.name or ''} {r.id[:8]}".strip() for r in comparison.runs)]
        body = []
        for row in rows:
            mark = "* " if row.differs else "  "
            body.append([f"{mark}{row.kind}s.{row.key}", *(_cell(v) for v in row.values)])
        _print(out, table(None, headers, body))
        out.print("[dim]* differs[/]")
        if html is not None:
            out.print(f"wrote {html}")

    emit(data, as_json, render)


def _declared_plots(root: Path) -> list[str]:
    """The plots files the project's stages declare (none without an mlcd.yaml)."""
    from mlcd.layout import CONFIG_FILE
    from mlcd.pipeline.snapshot import load_snapshot

    if not (root / CONFIG_FILE).is_file():
        return []
    return [p for spec in load_snapshot(root).stages.values() for p in spec.plots]


@runs_app.command("lineage")
def lineage(
    ref: Annotated[
        str, typer.Argument(help="A run (id, prefix, name) or an output digest (8+ hex chars).")
    ],
    depth: Annotated[
        int, typer.Option("--depth", help="Levels of upstream runs to follow.", min=0)
    ] = 3,
    as_json: JsonOpt = False,
) -> None:
    """What produced a run's outputs: code, params, data and upstream runs; or which run
    produced a digest."""
    from mlcd.errors import NotFound
    from mlcd.project import Project
    from mlcd.tracking.lineage import looks_like_digest, producers, run_lineage

    made_by: list[dict[str, Any]] = []
    with Project.open(local_store=True) as project, project.store.read() as conn:
        if looks_like_digest(ref):
            made_by = producers(conn, ref)
        if made_by:
            graph = run_lineage(conn, made_by[-1]["id"], depth)
        else:
            try:
                graph = run_lineage(conn, ref, depth)
            except NotFound:
                if looks_like_digest(ref):
                    raise NotFound(
                        f"no run produced an output with digest {ref} and no run is named so",
                        hint="check the digest in mlcd.lock, or list runs with 'mlcd runs list'",
                    ) from None
                raise
    data = {"produced_by": made_by, "lineage": graph} if made_by else graph

    def render(out: Any) -> None:
        from rich.tree import Tree

        if made_by:
            out.print(f"[bold]{ref}[/] was produced by:")
            for p in made_by:
                out.print(
                    f"  run {p['id'][:8]} {p['name'] or ''} stage {p['stage'] or '-'} "
                    f"as {p['path']} ({_when(p['started_at'])})"
                )
        _print(out, _tree(Tree, graph))

    emit(data, as_json, render)


def _tree(tree_type: Any, graph: dict[str, Any]) -> Any:
    run = graph["run"]
    if graph.get("truncated"):
        return tree_type(f"run {run['id'][:8]} (not followed further; raise --depth)")
    label = f"[bold]run {run['id'][:8]}[/] {run.get('name') or ''} ({run['kind']}, {run['status']})"
    root = tree_type(label)
    code = graph["code"]
    commit = (code["git_commit"] or "unknown")[:12]
    root.add(f"code: commit {commit}{' (dirty)' if code['git_dirty'] else ''}")
    if graph["params"]:
        params = root.add(f"params ({len(graph['params'])})")
        for key, value in graph["params"].items():
            params.add(f"{key} = {value}")
    if graph["inputs"]:
        inputs = root.add("inputs")
        for item in graph["inputs"]:
            source = item["produced_by"]
            if source is None:
                origin = "source data"
            elif source["same_run"]:
                origin = f"from stage {source['stage']}"
            else:
                origin = f"from run {source['run_id'][:8]} stage {source['stage'] or '-'}"
            inputs.add(f"{item['path']} {item['digest'][:12]} ({item['stage']}) ← {origin}")
    if graph["outputs"]:
        outputs = root.add("outputs")
        for item in graph["outputs"]:
            outputs.add(f"{item['path']} {item['digest'][:12]} ({item['role']}, {item['stage']})")
    for model in graph["models"]:
        root.add(f"model {model['model']} v{model['version']}")
    for upstream in graph["upstream"]:
        root.add(_tree(tree_type, upstream))
    return root


def diff(
    base: Annotated[
        str | None,
        typer.Argument(
            help="Git revision or run to compare from (default: HEAD).",
            show_default=False,
            metavar="REV_OR_RUN",
        ),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="Git revision or run to compare to (default: the workspace).",
            show_default=False,
            metavar="REV_OR_RUN",
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list params and metrics that did not change.")
    ] = False,
    markdown: Annotated[
        bool, typer.Option("--md", help="Print Markdown (for a PR comment).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """How params and metrics changed from REV_OR_RUN (a git revision, read from its
    mlcd.lock, or a run) to --against (default: the workspace). 'run:ID' or 'rev:REV' force
    one reading."""
    from mlcd.project import Project
    from mlcd.tracking.diff import compare_snapshots, format_cell, format_change, resolve_side

    started = time.perf_counter()
    with Project.open() as project:
        old = resolve_side(
            base or "HEAD", project.root, project.config, lambda: project.store.read()
        )
        new = resolve_side(against, project.root, project.config, lambda: project.store.read())
    result = compare_snapshots(old, new, include_same=show_all)
    if markdown and not as_json:
        typer.echo(result.to_markdown(), nl=False)
        return

    def render(out: Any) -> None:
        for note in (*old.notes, *new.notes):
            out.print(f"[yellow]note:[/] {note}")
        if not result.rows:
            out.print(f"no param or metric changed from {old.label} to {new.label}")
            return
        rows = [
            [f"{r.kind}s.{r.key}", format_cell(r.old), format_cell(r.new), format_change(r)]
            for r in result.rows
        ]
        _print(out, table(f"{old.label} → {new.label}", ["key", "old", "new", "change"], rows))
        out.print(f"[dim]{time.perf_counter() - started:.2f}s[/]")

    emit(result.to_dict(), as_json, render)


plots_app = typer.Typer(help="Draw the plots stages declare.", no_args_is_help=True)


@plots_app.command("show")
def plots_show(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "plots.html"
    ),
    plotly: Annotated[
        str, typer.Option("--plotly", help="inline, or directory: one plotly.min.js beside it.")
    ] = "inline",
    run: Annotated[
        str | None, typer.Option("--run", help="Draw a run's plots (default: the workspace).")
    ] = None,
    vs: Annotated[
        str | None, typer.Option("--vs", help="Draw another run's plots on the same charts.")
    ] = None,
) -> None:
    """Render declared plots files (CSV/TSV/JSON series, images) as HTML, like dvc plots."""
    import tempfile

    from mlcd.layout import find_root
    from mlcd.project import Project
    from mlcd.tracking.plots import render_page, runs_plot_files

    root = find_root()
    declared = _declared_plots(root)
    files: dict[str, dict[str, Path]] = {}
    with tempfile.TemporaryDirectory() as folder:
        if run is None:
            for p in declared:
                if (root / p).is_file():
                    files.setdefault(p, {})["workspace"] = root / p
        refs = [r for r in (run, vs) if r is not None]
        if refs:
            with Project.open(root) as project:
                for p, per_run in runs_plot_files(
                    project.store, project.objects, refs, declared, Path(folder)
                ).items():
                    files.setdefault(p, {}).update(per_run)
        written = render_page(files, out, plotly)
    console().print(f"{len(files)} plot(s) written to {written}")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(runs_app, name="runs")
    app.add_typer(plots_app, name="plots")
    app.command("diff")(diff)
