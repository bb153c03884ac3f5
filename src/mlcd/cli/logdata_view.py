"""``mlcd data from-log``: the work behind the command (argument parsing is in pipeline_cmd)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def from_log(
    model: str,
    path: Path,
    since: str | None,
    until: str | None,
    labelled_only: bool,
    sample: int | None,
    stratify: str | None,
    seed: int,
    label: str | None,
    as_json: bool,
) -> None:
    """Write the labelled log of ``model`` to ``path`` and track it with a pointer file."""
    from mlcd.cli.output import emit
    from mlcd.layout import find_root
    from mlcd.logdata.export import export_log_dataset
    from mlcd.monitor.window import parse_since
    from mlcd.pipeline.data import add_data
    from mlcd.pipeline.record import record_data_add
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.statcache import StatCache
    from mlcd.project import Project

    root = find_root()
    now = time.time()
    start = parse_since(since, now) if since else None
    end = parse_since(until, now) if until else None
    snapshot = load_snapshot(root)
    produced = {p: spec.name for spec in snapshot.stages.values() for p in spec.produced}
    from mlcd.cli.step_progress import step_progress

    with Project.open(root) as project, step_progress(f"from-log {model}", not as_json) as status:
        declared = project.config.models.get(model)
        column = label or (declared.target if declared and declared.target else None) or "label"
        target = path if path.is_absolute() else Path.cwd() / path
        export = export_log_dataset(
            project.store,
            root,
            model,
            target,
            since=start,
            until=end,
            labelled_only=labelled_only,
            sample=sample,
            stratify=stratify,
            seed=seed,
            label=column,
            progress=status,
        )
        with StatCache(snapshot.state_dir / "statcache.db") as statcache:
            added = add_data(root, [target], project.objects, statcache, produced)
        record_data_add(project.store, root, [(p.path, p.digest, p.size) for p, _ in added])
    pointer = added[0][0]
    document: dict[str, Any] = {
        **export.to_dict(),
        "path": pointer.path,
        "pointer": pointer.pointer_path,
        "changed": added[0][1],
    }

    def render(doc: dict[str, Any]) -> None:
        from mlcd.cli.output import console

        labels = doc["labels"]
        console().print(
            f"{doc['rows']} rows of {model} ({labels['joined']} labelled, from "
            f"{len(doc['segments'])} log segment(s)) -> {doc['path']}\n"
            f"digest {doc['digest'][:16]}; {'tracked' if doc['changed'] else 'unchanged'}: "
            f"{doc['pointer']}\nCommit the .mlcd pointer file; 'mlcd push' sends the data to "
            "the remote."
        )

    emit(document, as_json, render)


def show_windows(model: str, role: str | None, as_json: bool) -> None:
    """``mlcd data windows``: a table of the model's recorded windows."""
    from mlcd.cli.output import emit
    from mlcd.errors import UsageError
    from mlcd.logdata.windows import list_windows
    from mlcd.project import Project

    if role not in (None, "eval", "train"):
        raise UsageError(f"--role must be 'eval' or 'train', not {role!r}")
    with Project.open() as project:
        windows = [w.to_dict() for w in list_windows(project.store, model, role)]

    def render(rows: list[dict[str, Any]]) -> None:
        from rich.table import Table

        from mlcd.cli.output import console

        if not rows:
            console().print(f"no data windows recorded for {model}")
            return
        table = Table("id", "role", "name", "rows", "version", "digest", "recorded")
        for w in rows:
            table.add_row(
                str(w["id"]), w["role"], w["name"], f"{w['rows']:,}",
                "" if w["version"] is None else f"v{w['version']}", w["digest"][:12],
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(w["created_at"])),
            )  # fmt: skip
        console().print(table)

    emit(windows, as_json, render)


def add_window(model: str, path: Path, role: str, name: str | None, as_json: bool) -> None:
    """``mlcd data add-window``: store a table file as a window of the model."""
    from mlcd.cli.output import emit
    from mlcd.errors import UsageError
    from mlcd.logdata.windows import record_window
    from mlcd.project import Project

    if role not in ("eval", "train"):
        raise UsageError(f"--role must be 'eval' or 'train', not {role!r}")
    with Project.open() as project:
        window, created = record_window(
            project.store, project.objects, model, path, role=role, name=name
        )
    document = {**window.to_dict(), "created": created}

    def render(doc: dict[str, Any]) -> None:
        from mlcd.cli.output import console

        verb = "recorded" if doc["created"] else "already recorded as"
        console().print(f"{verb} window {doc['id']} of {model}: {doc['name']} ({doc['rows']} rows)")

    emit(document, as_json, render)


def validate_data(targets: list[str], junit: Path | None, as_json: bool) -> None:
    """``mlcd data validate``: check declared datasets; exit 1 when a check fails."""
    from mlcd.cli.output import emit
    from mlcd.config import load_config
    from mlcd.contracts.report import render_junit
    from mlcd.errors import CheckFailed, UsageError
    from mlcd.layout import find_root
    from mlcd.pipeline.contracts_check import validate_declared

    root = find_root()
    config = load_config(root)
    if not config.data:
        raise UsageError(
            "no datasets are declared under data: in mlcd.yaml",
            hint="declare a contract: data: {NAME: {path: ..., columns: {...}}} (docs/data.md)",
        )
    reports = validate_declared(root, dict(config.data), targets)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(render_junit(reports), encoding="utf-8")
    document = {"passed": all(r.passed for r in reports), "data": [r.to_dict() for r in reports]}

    def render(doc: dict[str, Any]) -> None:
        from rich.markup import escape

        from mlcd.cli.output import console

        for report in reports:
            style = (
                "green"
                if report.passed and not report.warnings
                else ("yellow" if report.passed else "red")
            )
            console().print(f"[{style}]{escape(report.summary())}[/]", highlight=False)

    emit(document, as_json, render)
    if not document["passed"]:
        failed = [r.name for r in reports if not r.passed]
        raise CheckFailed(f"data contract(s) failed: {', '.join(failed)}")


def _project_parts() -> tuple[Any, Any, dict[str, str]]:
    from mlcd.layout import find_root
    from mlcd.pipeline.snapshot import load_snapshot

    root = find_root()
    snapshot = load_snapshot(root)
    produced = {p: spec.name for spec in snapshot.stages.values() for p in spec.produced}
    return root, snapshot, produced


def import_source(
    url: str, path: Path, query: str | None, freshness: str | None, as_json: bool
) -> None:
    """``mlcd data import``: read the source into the project and track it."""
    from mlcd.cli.output import emit
    from mlcd.pipeline.imports import import_data, source_item
    from mlcd.pipeline.record import record_data_add
    from mlcd.pipeline.statcache import StatCache
    from mlcd.project import Project

    root, snapshot, produced = _project_parts()
    target = path if path.is_absolute() else Path.cwd() / path
    try:
        relative = target.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        from mlcd.errors import UsageError

        raise UsageError(f"{path} is outside the project {root}") from None
    item = source_item(url, relative, query, freshness)
    with Project.open(root) as project, StatCache(snapshot.state_dir / "statcache.db") as cache:
        pointer, changed, fetched = import_data(
            root, project.store, project.objects, cache, item, produced
        )
        record_data_add(project.store, root, [(pointer.path, pointer.digest, pointer.size)])
    document = {**pointer.to_dict(), "pointer": pointer.pointer_path, "changed": changed,
                "fetched": fetched}  # fmt: skip

    def render(doc: dict[str, Any]) -> None:
        from mlcd.cli.output import console

        console().print(
            f"{doc['path']} imported ({doc['digest'][:16]}, {'new' if changed else 'unchanged'}); "
            f"commit {doc['pointer']}; 'mlcd data update' reads the source again",
            highlight=False,
            markup=False,
        )

    emit(document, as_json, render)


def update_sources(targets: list[str], as_json: bool) -> None:
    """``mlcd data update``: read imported data again from its source."""
    from mlcd.cli.output import emit
    from mlcd.pipeline.imports import update_data
    from mlcd.pipeline.record import record_data_add
    from mlcd.pipeline.statcache import StatCache
    from mlcd.project import Project

    root, snapshot, produced = _project_parts()
    with Project.open(root) as project, StatCache(snapshot.state_dir / "statcache.db") as cache:
        results = update_data(root, project.store, project.objects, cache, targets, produced)
        changed = [(p.path, p.digest, p.size) for p, moved, _ in results if moved]
        if changed:
            record_data_add(project.store, root, changed)
    document = [{**p.to_dict(), "changed": moved, "fetched": f} for p, moved, f in results]

    def render(rows: list[dict[str, Any]]) -> None:
        from mlcd.cli.output import console

        if not rows:
            console().print("no imported data (see 'mlcd data import')")
        for row in rows:
            state = "updated" if row["changed"] else "unchanged"
            console().print(f"{row['path']}: {state}", highlight=False, markup=False)

    emit(document, as_json, render)
