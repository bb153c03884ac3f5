"""What the pipeline commands do and print, without typer (``mlcd.cli.entry`` calls it directly).

``status`` and a no-op ``run`` stay on a fast path: the cached snapshot of ``mlcd.yaml`` and
the stat cache, no pydantic, SQLAlchemy or rich. The project (config, stores) is opened only
when something must run, be restored or be transferred.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcd.pipeline.runner import RunResult, Services
    from mlcd.project import Project


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class _Lazy:
    """Opens the project (config + stores) on first use, and closes it at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            from mlcd.project import Project

            self._project = Project.open(self.root)
        return self._project

    def services(self) -> Services:
        from mlcd.pipeline.runner import Services

        return Services(self.project.store, self.project.objects)

    def close(self) -> None:
        if self._project is not None:
            self._project.close()


def _render_run(result: RunResult) -> None:
    from mlcd.cli.pipeline_progress import ICONS

    counts: dict[str, int] = {}
    for stage in result.stages:
        counts[stage.outcome] = counts.get(stage.outcome, 0) + 1
    if result.dry_run:
        lines = ["Dry run: nothing was executed."]
        for stage in result.stages:
            verb = {"run": "would run", "restore": "would restore from cache"}.get(
                stage.outcome, stage.outcome
            )
            lines.append(
                f"  {ICONS.get(stage.outcome, '·')} {stage.stage}: {verb} ({stage.reason})"
            )
        _write("\n".join(lines) + "\n")
        return
    if result.run_id is None:
        _write(f"Pipeline is up to date ({len(result.stages)} stage(s)); nothing to run.\n")
        return
    parts = [f"{n} {what}" for what, n in counts.items()]
    _write(f"Run {result.run_id}: {', '.join(parts)}.\n")
    for stage in result.failed:  # diagnostics go to stderr, with the error that follows
        if stage.outcome == "failed":
            sys.stderr.write(f"\nstage '{stage.stage}' failed: {stage.error}\n")
            if stage.log_tail:
                sys.stderr.write(f"--- last lines of {stage.log_path} ---\n{stage.log_tail}\n---\n")
            sys.stderr.flush()


def _register_models(lazy: _Lazy, snapshot: Any, result: RunResult) -> list[Any]:
    """Register the declared models whose producing stage ran or was restored."""
    from mlcd.registration import register_declared_models

    config = lazy.project.config
    produced = {s.stage for s in result.stages if s.outcome in ("ran", "cached")}
    names = []
    for name, spec in config.models.items():
        stage = spec.stage or next(
            (st.name for st in snapshot.stages.values() if spec.path in st.produced), None
        )
        if stage in produced:
            names.append(name)
    if not names:
        return []
    project = lazy.project
    return register_declared_models(
        project.root, config, project.store, project.objects, result.run_id, names
    )


def run_stages(
    stages: list[str] | None = None,
    force: bool = False,
    jobs: int | None = None,
    dry_run: bool = False,
    executor: str = "local",
    as_json: bool = False,
    force_upstream: bool = False,
    single: bool = False,
) -> None:
    """Run the stale stages (and what depends on them); restore cached ones. Exit 3 if a stage fails."""
    from mlcd.errors import StageFailed, UsageError
    from mlcd.layout import find_root
    from mlcd.pipeline.runner import RunOptions, run_pipeline
    from mlcd.pipeline.snapshot import load_snapshot

    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {jobs})")
    root = find_root()
    snapshot = load_snapshot(root)
    lazy = _Lazy(root)
    from mlcd.cli.pipeline_progress import Progress

    progress = Progress(enabled=True)
    options = RunOptions(
        tuple(stages or ()), force, jobs, dry_run, executor, force_upstream, single
    )
    registered: list[Any] = []
    try:
        result = run_pipeline(snapshot, lazy.services, options, progress)
        progress.stop()
        if not dry_run and result.run_id is not None:
            registered = _register_models(lazy, snapshot, result)
    finally:
        progress.stop()
        lazy.close()
    if as_json:
        from mlcd.cli.output import emit

        emit({**result.to_dict(), "registered": [r.to_dict() for r in registered]}, True)
    else:
        _render_run(result)
        for item in registered:
            if item.version is not None:
                verb = "registered" if item.created else "unchanged:"
                _write(f"model {item.model}: {verb} v{item.version}\n")
    if not result.ok:
        failed = [s.stage for s in result.failed if s.outcome == "failed"]
        blocked = [s.stage for s in result.failed if s.outcome == "blocked"]
        message = f"stage(s) failed: {', '.join(failed)}"
        if blocked:
            message += f"; not run because of it: {', '.join(blocked)}"
        logs = [s.log_path for s in result.failed if s.log_path]
        raise StageFailed(
            message,
            hint=f"read the log ({', '.join(logs)}), fix the stage and run 'mlcd run' again"
            if logs
            else "fix the stage and run 'mlcd run' again",
        )


def _refresh_pointers(snapshot: Any) -> None:
    """``warm_start`` stages: the alias they start from may have moved since the last run."""
    if not any(i["kind"] == "warm_start" for s in snapshot.stages.values() for i in s.inputs):
        return
    from mlcd.pipeline.inputs import refresh_inputs
    from mlcd.project import Project

    with Project.open(snapshot.root) as project:
        refresh_inputs(snapshot, project.store, project.objects, kinds=("warm_start",))


def show_status(
    stages: list[str] | None = None, check: bool = False, as_json: bool = False
) -> None:
    """Show stale stages and changed tracked data, and why."""
    from mlcd.errors import CheckFailed
    from mlcd.layout import find_root
    from mlcd.pipeline.data import data_status
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.statcache import StatCache
    from mlcd.pipeline.status import Digests, pipeline_status

    root = find_root()
    snapshot = load_snapshot(root)
    _refresh_pointers(snapshot)
    with StatCache(snapshot.state_dir / "statcache.db") as statcache:
        digests = Digests(root, statcache)  # a dep that is also tracked data is hashed once
        states = pipeline_status(snapshot, statcache, tuple(stages or ()), digests)
        produced = [p for spec in snapshot.stages.values() for p in spec.produced]
        data = [] if stages else data_status(root, statcache, produced, digests)
    stale = [s for s in states if s.stale or s.upstream]
    changed = [d for d in data if d.status != "unchanged"]
    upstream = _upstream(root, data)
    moved = [path for path, state in upstream.items() if state == "changed"]
    if as_json:
        import json

        document = {
            "up_to_date": not stale and not changed and not moved,
            "stages": [s.to_dict() for s in states],
            "data": [{**d.to_dict(), **_upstream_field(upstream, d)} for d in data],
        }
        _write(json.dumps(document, indent=2) + "\n")
    elif not stale and not changed and not moved:
        _write(f"Pipeline and data are up to date ({len(states)} stage(s), {len(data)} tracked).\n")
    else:
        lines = [
            f"{path}: its source changed upstream; 'mlcd data update {path}' reads it again"
            for path in moved
        ]
        for state in stale:
            if state.stale:
                lines.append(f"{state.name}: stale")
                lines.extend(f"    {reason.message}" for reason in state.reasons)
            else:
                lines.append(
                    f"{state.name}: upstream {', '.join(state.upstream)} stale; runs only if their outputs change"
                )
        for item in changed:
            lines.append(f"{item.pointer.path}: tracked data {item.status}")
            if item.status == "modified":
                lines.append(
                    "    'mlcd data add' records the new version; 'mlcd pull --force' restores"
                )
            else:
                lines.append("    'mlcd pull' restores it")
        _write("\n".join(lines) + "\n")
    if check and (stale or changed or moved):
        raise CheckFailed(
            f"{len(stale)} stage(s) stale, {len(changed)} tracked path(s) changed, "
            f"{len(moved)} source(s) changed upstream",
            hint="run 'mlcd run' (and 'mlcd data add' for changed data, 'mlcd data update' "
            "for moved sources), then commit mlcd.lock",
        )


def _upstream(root: Path, data: list[Any]) -> dict[str, str]:
    """For imported data (``mlcd data import``): did the source move since the last read?"""
    imported = [d.pointer for d in data if d.pointer.source]
    if not imported:
        return {}
    from mlcd.pipeline.imports import upstream_status
    from mlcd.project import Project

    with Project.open(root) as project:
        return {p.path: upstream_status(root, project.store, p) for p in imported}


def _upstream_field(upstream: dict[str, str], state: Any) -> dict[str, str]:
    path = state.pointer.path
    return {"upstream": upstream[path]} if path in upstream else {}


def show_dag(fmt: str = "text") -> None:
    """Print the stage graph."""
    import json

    from mlcd.errors import UsageError
    from mlcd.layout import find_root
    from mlcd.pipeline.snapshot import load_snapshot

    fmt = fmt.lower()
    if fmt not in ("text", "mermaid", "json"):
        raise UsageError(f"unknown format {fmt!r}", hint="use --format text, mermaid or json")
    graph = load_snapshot(find_root()).dag
    if fmt == "json":
        _write(json.dumps(graph.to_dict(), indent=2) + "\n")
    elif fmt == "mermaid":
        _write(graph.to_mermaid())
    else:
        _write(graph.to_text() or "(no stages)\n")


def _add_data_full(paths: list[Path]) -> list[tuple[Any, bool]]:
    """``data add`` through the ``Project`` (pydantic config, SQLAlchemy store)."""
    from mlcd.layout import find_root
    from mlcd.pipeline.data import add_data
    from mlcd.pipeline.record import git_state, record_data_add
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.statcache import StatCache

    root = find_root()
    snapshot = load_snapshot(root)
    produced = {p: spec.name for spec in snapshot.stages.values() for p in spec.produced}
    lazy = _Lazy(root)
    warmer: threading.Thread | None = None
    try:
        # Asking git for the commit (a subprocess) starts at once; opening the metadata store
        # (SQLAlchemy, migrations: Python work that holds the GIL) waits until the config is
        # loaded, so that copying and hashing (which release it) start as early as they can.
        warm: dict[str, Any] = {}
        config_loaded = threading.Event()

        def warm_up() -> None:
            try:
                warm["git"] = git_state(root)
                config_loaded.wait()
                if "project" in warm:  # else the project failed to open: reported below
                    warm["store"] = warm["project"].store
            except Exception:  # opened again below, where the error is reported properly
                pass

        warmer = threading.Thread(target=warm_up, daemon=True)
        warmer.start()
        try:
            project = warm["project"] = lazy.project
        finally:
            config_loaded.set()
        with StatCache(snapshot.state_dir / "statcache.db") as statcache:
            added = add_data(root, paths, project.objects, statcache, produced)
        warmer.join()
        store = warm.get("store") or project.store  # the warm-up failed: open it here
        record_data_add(
            store, root, [(p.path, p.digest, p.size) for p, _ in added], warm.get("git")
        )
    finally:
        if warmer is not None:
            warmer.join()  # closing the project must not race the store it may be opening
        lazy.close()
    return added


def add_data_paths(paths: list[Path], as_json: bool = False) -> None:
    """Store files or folders by content and write a PATH.mlcd pointer to commit."""
    from mlcd.pipeline.data import add_data_fast

    added = add_data_fast(paths)  # None: it could not be sure, nothing done; the full way
    if added is None:
        added = _add_data_full(paths)
    if as_json:
        import json

        items = [{**p.to_dict(), "pointer": p.pointer_path, "changed": c} for p, c in added]
        _write(json.dumps({"added": items}, indent=2) + "\n")
        return
    for pointer, changed in added:
        verb = "tracked" if changed else "unchanged"
        _write(
            f"{verb} {pointer.path} ({pointer.files} file(s), {pointer.size} bytes) "
            f"-> {pointer.pointer_path}\n"
        )
    _write("Commit the .mlcd pointer files; 'mlcd push' sends the data to the remote.\n")


def show_data_status(check: bool = False, as_json: bool = False) -> None:
    """Compare tracked data with its pointer files."""
    from mlcd.errors import CheckFailed
    from mlcd.layout import find_root
    from mlcd.pipeline.data import data_status
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.statcache import StatCache

    root = find_root()
    snapshot = load_snapshot(root)
    produced = [p for spec in snapshot.stages.values() for p in spec.produced]
    with StatCache(snapshot.state_dir / "statcache.db") as statcache:
        states = data_status(root, statcache, skip=produced)
    upstream = _upstream(root, states)
    changed = [
        s for s in states if s.status != "unchanged" or upstream.get(s.pointer.path) == "changed"
    ]
    if as_json:
        import json

        rows = [{**s.to_dict(), **_upstream_field(upstream, s)} for s in states]
        _write(json.dumps({"data": rows}, indent=2) + "\n")
    elif not states:
        _write("No tracked data (add some with 'mlcd data add PATH').\n")
    else:
        for state in states:
            note = upstream.get(state.pointer.path)
            extra = "  (source changed upstream: 'mlcd data update')" if note == "changed" else ""
            _write(f"{state.status:9} {state.pointer.path}{extra}\n")
    if check and changed:
        raise CheckFailed(
            f"{len(changed)} tracked path(s) changed",
            hint="'mlcd data add PATH' records the new version; 'mlcd pull --force' restores it",
        )


def _transfer_progress(label: str) -> Any:
    """A rich progress callback for push/pull (silent when stderr is not a terminal)."""
    from mlcd.cli.output import err_console

    console = err_console()
    if not console.is_terminal:
        return None, None
    from rich.progress import Progress

    bar = Progress(console=console, transient=True)
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def push_objects(
    remote: str | None = None, all_entries: bool = False, as_json: bool = False
) -> None:
    """Send objects (mlcd.lock outputs, tracked data) and run-cache entries to a remote."""
    from mlcd.layout import find_root
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.transfer import push as do_push

    root = find_root()
    snapshot = load_snapshot(root)
    lazy = _Lazy(root)
    bar, update = (None, None) if as_json else _transfer_progress("pushing")
    try:
        project = lazy.project
        target = project.remote(remote)
        if bar is not None:
            bar.start()
        report = do_push(
            root, snapshot, project.store, project.objects, target, all_entries, update
        )
    finally:
        if bar is not None:
            bar.stop()
        lazy.close()
    _report_transfer(report.to_dict(), as_json, "pushed")


def pull_objects(remote: str | None = None, force: bool = False, as_json: bool = False) -> None:
    """Fetch run-cache entries and objects from a remote; restore missing data and outputs."""
    from mlcd.layout import find_root
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.statcache import StatCache
    from mlcd.pipeline.transfer import pull as do_pull

    root = find_root()
    snapshot = load_snapshot(root)
    lazy = _Lazy(root)
    bar, update = (None, None) if as_json else _transfer_progress("pulling")
    try:
        project = lazy.project
        source = project.remote(remote)
        if bar is not None:
            bar.start()
        with StatCache(snapshot.state_dir / "statcache.db") as statcache:
            report = do_pull(
                root, snapshot, project.store, project.objects, source, statcache, force, update
            )
    finally:
        if bar is not None:
            bar.stop()
        lazy.close()
    _report_transfer(report.to_dict(), as_json, "pulled")


def _report_transfer(report: dict[str, Any], as_json: bool, verb: str) -> None:
    from mlcd.errors import ObjectNotFound

    if as_json:
        import json

        _write(json.dumps(report, indent=2) + "\n")
    else:
        _write(
            f"{verb} {report['objects_copied']} object(s) "
            f"({report['objects_present']} already there) and "
            f"{report['entries_copied']} run-cache entr(y/ies); remote {report['remote']}\n"
        )
        for path in report["restored"]:
            _write(f"  restored {path}\n")
        for path in report["skipped_modified"]:
            _write(f"  kept {path} (modified locally; --force overwrites)\n")
        for item in report.get("bad", []):
            where = ", ".join(item["paths"]) or "nothing restored from it"
            _write(f"  skipped {item['kind']} {item['id'][:12]} ({where}): {item['problem']}\n")
    if report.get("bad"):
        from mlcd.pipeline.transfer import bad_items_error

        raise bad_items_error(report["bad"])
    if report["missing"]:
        where = "locally" if verb == "pushed" else "on the remote"
        raise ObjectNotFound(
            f"{len(report['missing'])} object(s) are not {where}: "
            + ", ".join(d[:12] for d in report["missing"][:5]),
            hint="run the stages that make them ('mlcd run'), or push them from a clone that has them",
        )
