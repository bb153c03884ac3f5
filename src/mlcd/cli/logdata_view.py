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
    with Project.open(root) as project:
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
