"""ExperimentRun: ``mlcd exp run`` — the pipeline with overridden params, in a workspace.

The workspace (``.mlcd/exp/<id>/``) is a copy of the project; the run uses the project's own
metadata and object stores, so a stage whose inputs did not change is restored from the shared
run cache instead of running again. The run is tagged ``mlcd.exp=1`` and keeps, as artifacts,
the workspace's ``mlcd.lock`` and its params files: what ``mlcd exp apply`` writes back.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd.errors import PipelineError, UsageError
from mlcd.experiments.links import GuardedReporter, blame, linking
from mlcd.experiments.overrides import Override, parse_overrides, write_overrides
from mlcd.experiments.tags import TAG_BASE, TAG_EXP, TAG_NAME, TAG_OVERRIDES
from mlcd.experiments.workspace import build_workspace, stage_paths
from mlcd.layout import STATE_DIR
from mlcd.pipeline.plan import Reporter, RunOptions, RunResult, Services

#: Artifact paths (role ``artifact``) of what ``exp apply`` writes back.
LOCK_ARTIFACT = "mlcd.exp/mlcd.lock"
PARAMS_PREFIX = "mlcd.exp/params/"
#: Where workspaces live, below the project.
WORKSPACES = "exp"


@dataclass
class ExperimentRun:
    """The outcome of ``run_experiment``: the pipeline's result and the experiment's name."""

    name: str
    result: RunResult
    overrides: list[Override]
    base: str | None
    workspace: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base,
            "overrides": [o.to_dict() for o in self.overrides],
            "workspace": str(self.workspace) if self.workspace else None,
            **self.result.to_dict(),
        }


def _name_taken(services: Services, name: str) -> bool:
    from mlcd.experiments.queue import name_taken

    return name_taken(services.store, name)


def _record(
    services: Services,
    run_id: str,
    tags: dict[str, str],
    files: dict[str, str],
    parent_id: str | None = None,
) -> None:
    """Tag the run, store its lock and params files as artifacts, link it to its parent."""
    from mlcd.store import queue, runs

    refs = []
    for path, text in files.items():
        data = text.encode("utf-8")
        digest = services.objects.put_bytes(data)
        refs.append(runs.ArtifactRef("artifact", path, str(digest), len(data)))

    def work(conn: Any) -> None:
        runs.set_tags(conn, run_id, tags)
        runs.add_artifacts(conn, run_id, refs)
        if parent_id is not None:
            queue.set_parent(conn, run_id, parent_id)

    services.store.transact(work)


def run_experiment(
    root: Path,
    services: Services,
    settings: Sequence[str] = (),
    name: str | None = None,
    keep: bool = False,
    jobs: int | None = None,
    reporter: Reporter | None = None,
    *,
    exp_id: str | None = None,
    parent_id: str | None = None,
    executor: str = "local",
    tags: dict[str, str] | None = None,
) -> ExperimentRun:
    """Run the pipeline of the project at ``root`` with ``settings`` applied, in a workspace.

    Args:
        root: the project root (its files are read, never written).
        services: the project's metadata and object stores.
        settings: ``[FILE:]KEY=VALUE`` overrides; FILE defaults to the project's params file.
        name: the experiment's name (default: ``exp-<id>``); must not be taken.
        keep: leave the workspace in place (its path is returned).
        jobs: stages run at once.
        reporter: receives progress events.
        exp_id: the workspace's name below ``.mlcd/exp/`` (default: random); a queue worker
            passes its entry's id, so a dead worker's workspace can be found and removed.
        parent_id: the run this one is a child of (a sweep's parent run).
        executor: the pipeline's executor (``local``, ``ray``).
        tags: more tags for the run (a sweep's trial number, ...).

    Returns:
        The experiment; ``result.ok`` is False when a stage failed (it is recorded anyway).

    Raises:
        UsageError: a malformed override, or a name already taken; nothing ran.
        ConfigError: the pipeline is invalid.
        PipelineError: the pipeline has nothing to run (no stage at all).
    """
    from mlcd.pipeline.lockfile import LOCK_FILE
    from mlcd.pipeline.record import git_state
    from mlcd.pipeline.runner import run_pipeline
    from mlcd.pipeline.snapshot import load_snapshot

    main = load_snapshot(root)
    overrides = parse_overrides(settings, main.params_file)
    exp_id = exp_id or uuid.uuid4().hex[:8]
    name = name or f"exp-{exp_id[:8]}"
    if _name_taken(services, name):
        raise UsageError(
            f"an experiment named '{name}' exists already",
            hint="pick another name with -n, or remove it: mlcd exp remove " + name,
        )
    if not main.stages:
        raise PipelineError("the pipeline has no stages: nothing to experiment with")
    base = git_state(root)[0]
    workspace = root / STATE_DIR / WORKSPACES / exp_id
    if workspace.exists():  # left by a worker that died while running this entry
        shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    # A throwaway workspace gets the cached outputs as hard links of the stored objects,
    # checked after every stage (experiments.links); a kept one, the project's cache.link.
    linked = None if keep or executor != "local" else linking(services.objects)
    guard = GuardedReporter(reporter or Reporter(), linked) if linked is not None else None
    run_services = Services(services.store, linked) if linked is not None else services
    try:
        produced, deps = stage_paths(main.stages.values())
        build_workspace(root, workspace, produced, deps)
        texts = write_overrides(workspace, overrides)
        snapshot = load_snapshot(workspace)
        for file in snapshot.params:  # every params file the stages read, overridden or not
            path = workspace / file
            if file not in texts and path.is_file():
                texts[file] = path.read_text(encoding="utf-8")
        result = run_pipeline(
            snapshot,
            lambda: run_services,
            RunOptions(jobs=jobs, executor=executor),
            guard or reporter or Reporter(),
        )
        if guard is not None:  # a stage wrote into a linked object: the experiment failed
            result = blame(services, result, guard.blamed)
        if result.run_id is None:
            raise PipelineError(
                "the experiment's pipeline had nothing to run, so no run was recorded",
                hint="do its stages declare outs or metrics?",
            )
        lock_path = workspace / LOCK_FILE
        files = {PARAMS_PREFIX + f: t for f, t in texts.items()}
        if lock_path.is_file():
            files[LOCK_ARTIFACT] = lock_path.read_text(encoding="utf-8")
        labels = {o.label(main.params_file): o.value for o in overrides}
        run_tags = {
            TAG_EXP: "1",
            TAG_NAME: name,
            TAG_BASE: base or "",
            TAG_OVERRIDES: json.dumps(labels, sort_keys=True),
            **(tags or {}),
        }
        _record(services, result.run_id, run_tags, files, parent_id)
    finally:
        if linked is not None:
            linked.close()
        if not keep:
            shutil.rmtree(workspace, ignore_errors=True)
    return ExperimentRun(name, result, overrides, base, workspace if keep else None)
