"""``mlcd import mlflow``: an MLflow tracking store (and registry) into an mlcd project.

What moves: experiments (each run carries ``mlflow.experiment_id`` / ``mlflow.experiment_name``
tags), runs with their name, user, status, start and end times, git commit, params, tags
(MLflow's own included) and every metric point with its step and timestamp, parent/child
links, every artifact file (stored content-addressed and recorded on the run), MLflow 3 logged
models' files (recorded on the run that logged them, under the model's name), and, with
``models``, registered models (see ``mlflow_models``).

How: a reader reads a page of runs at a time (runs through ``search_runs``, metric histories in
bulk, see ``mlflow_source``), leaves out the runs already imported before reading anything
else about them, downloads their artifacts to a scratch folder and builds the rows; the writer
stores the artifacts and writes the page in transactions of whole runs (see ``mlflow_runs``).
On Linux the reader is a forked process, so reading (Python-bound) and writing (SQLite-bound)
use two cores; a thread elsewhere, or with ``MLCD_IMPORT_READER=thread``. The writer's process
never imports mlflow unless registered models are imported too.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.adopt.mlflow_runs import (
    PreparedRun,
    RunWriter,
    WriteCounts,
    batches,
    link_parents,
    needs_import,
    present,
)
from mlcd.adopt.mlflow_source import MlflowSource, SourceExperiment
from mlcd.errors import MlcdError, TrackingError
from mlcd.objects import ObjectStore
from mlcd.objects.base import iter_files
from mlcd.store import Store, events
from mlcd.store.runs import ArtifactRef

#: ``progress(phase, done, total)``: phase is ``runs`` or ``models``; total may be None.
Progress = Callable[[str, int, int | None], None]
READER_ENV = "MLCD_IMPORT_READER"
_QUEUE_PAGES = 2
#: Runs per page read: about 100,000 metric points at 10 metrics x 100 steps.
_PAGE = 100


@dataclass
class ImportSummary:
    """What an import read and wrote."""

    tracking_uri: str
    experiments: list[str] = field(default_factory=list)
    runs_found: int = 0
    runs: WriteCounts = field(default_factory=WriteCounts)
    parents_linked: int = 0
    models: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri,
            "experiments": self.experiments,
            "runs": {
                "found": self.runs_found,
                "imported": self.runs.imported,
                "replaced": self.runs.replaced,
                "already_imported": self.runs.skipped,
                "metric_points": self.runs.points,
                "artifacts": self.runs.artifacts,
                "parents_linked": self.parents_linked,
            },
            "models": [m.to_dict() for m in self.models],
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Plan:
    """What the reader needs: picklable, so it can cross into a process."""

    tracking_uri: str
    registry_uri: str | None
    experiments: tuple[str, ...]
    store_url: str
    artifacts: bool
    scratch: str


# ---------------------------------------------------------------------- the reader
def _read(plan: _Plan, put: Callable[[Any], None]) -> None:
    """Send ``("start", experiments, total)``, then ``("page", found, runs)`` per page."""
    source = MlflowSource(plan.tracking_uri, plan.registry_uri)
    chosen = source.experiments(plan.experiments)
    by_id = {e.id: e for e in chosen}
    ids = list(by_id)
    put(("start", chosen, source.count_runs(ids)))
    logged = source.logged_models(ids) if plan.artifacts and ids else {}
    store = Store(plan.store_url, migrate=False)
    try:
        for page in source.runs(ids, _PAGE):
            with store.read() as conn:
                status = present(conn, [r.id for r in page])
            todo = [r for r in page if needs_import(r, status.get(r.id))]
            histories = source.metric_rows(todo)
            prepared = []
            for run in todo:
                folders: list[tuple[str, str]] = []
                if plan.artifacts:
                    scratch = Path(plan.scratch) / run.id
                    folder = source.run_artifacts(run, scratch / "run")
                    if folder is not None:
                        folders.append(("", str(folder)))
                    models = logged.get(run.id, [])
                    names = Counter(m.name for m in models)
                    for model in models:
                        prefix = (
                            model.name if names[model.name] == 1 else f"{model.name}-{model.id}"
                        )
                        files = source.folder(model.artifact_uri, scratch / "models" / model.id)
                        folders.append((prefix, str(files)))
                experiment = by_id.get(run.experiment_id) or SourceExperiment(run.experiment_id, "")
                points, latest = histories[run.id]
                prepared.append(PreparedRun.build(run, experiment, points, latest, folders))
            put(("page", len(page), prepared))
    finally:
        store.dispose()


def _error_message(exc: BaseException) -> tuple[str, str, str | None]:
    if isinstance(exc, MlcdError):
        return type(exc).__name__, exc.message, exc.hint
    return type(exc).__name__, f"{type(exc).__name__}: {exc}", None


def _rebuild(kind: str, message: str, hint: str | None) -> MlcdError:
    from mlcd import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, MlcdError) and kind != "FilterError":
        return cls(message, hint=hint)
    return TrackingError(f"reading the MLflow store failed: {message}", hint=hint)


def _child(plan: _Plan, pages: Any, parent: int) -> None:
    """The reader process: never returns (``os._exit``, so no inherited hook runs)."""
    code = 0

    def put(item: Any) -> None:
        while True:
            try:
                pages.put(item, timeout=0.5)
                return
            except queue.Full:
                if os.getppid() != parent:  # the writer died: stop reading
                    os._exit(1)

    try:
        _read(plan, put)
        put(("done",))
    except BaseException as exc:
        put(("error", *_error_message(exc)))
        code = 1
    finally:
        pages.close()
        pages.join_thread()
        os._exit(code)


def _pages(plan: _Plan) -> Iterator[Any]:
    """The reader's messages, from a forked process (Linux) or a thread."""
    use_process = (
        "fork" in multiprocessing.get_all_start_methods()
        and os.environ.get(READER_ENV, "process") != "thread"
    )
    if use_process:
        context = multiprocessing.get_context("fork")
        channel: Any = context.Queue(maxsize=_QUEUE_PAGES)
        process = context.Process(
            target=_child, args=(plan, channel, os.getpid()), name="mlcd-mlflow-reader"
        )
        process.start()
        try:
            while True:
                try:
                    item = channel.get(timeout=1.0)
                except queue.Empty:
                    if not process.is_alive():
                        raise TrackingError(
                            f"the MLflow reader process stopped (exit code {process.exitcode})",
                            hint="run again; MLCD_IMPORT_READER=thread reads in this process",
                        ) from None
                    continue
                yield item
                if item[0] in ("done", "error"):
                    return
        finally:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)
            channel.close()
        return
    yield from _thread_pages(plan)


def _thread_pages(plan: _Plan) -> Iterator[Any]:
    channel: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_PAGES)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                channel.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise SystemExit  # the writer stopped: end the thread quietly

    def work() -> None:
        try:
            _read(plan, put)
            put(("done",))
        except SystemExit:
            return
        except BaseException as exc:
            put(("error", *_error_message(exc)))

    thread = threading.Thread(target=work, name="mlcd-mlflow-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = channel.get()
            yield item
            if item[0] in ("done", "error"):
                return
    finally:
        stop.set()
        thread.join(timeout=10)


# ---------------------------------------------------------------------- the writer
def _store_folders(objects: ObjectStore, run: PreparedRun) -> None:
    for prefix, folder in run.folders:
        files = list(iter_files(Path(folder)))
        if not files:
            continue
        digests = objects.put_files([(full, None) for _, full in files])
        run.artifacts.extend(
            ArtifactRef(
                "artifact", f"{prefix}/{rel}" if prefix else rel, str(digest), full.stat().st_size
            )
            for (rel, full), digest in zip(files, digests, strict=True)
        )


def import_mlflow(
    store: Store,
    objects: ObjectStore,
    tracking_uri: str,
    *,
    experiments: Sequence[str] = (),
    models: bool = False,
    model_names: Sequence[str] = (),
    trust: bool = False,
    artifacts: bool = True,
    registry_uri: str | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import an MLflow store's runs (and registered models) into ``store``/``objects``.

    Args:
        store: the mlcd metadata store written to.
        objects: the mlcd object store artifacts and model packages go to.
        tracking_uri: the MLflow tracking URI.
        experiments: experiment names (default: every active experiment).
        models: import registered models too.
        model_names: only these registered models (implies ``models``).
        trust: unpickle MLflow's pickled scikit-learn models to convert them to skops.
        artifacts: copy run artifacts (and logged models' files).
        registry_uri: the MLflow registry URI (default: the tracking URI).
        progress: called as runs and model versions are done.

    Returns:
        The summary (also recorded as an ``import.mlflow`` event).

    Raises:
        ConfigError: mlflow is not installed.
        UsageError: a named experiment or model does not exist.
        TrackingError: the MLflow store cannot be read.
        StoreError: the mlcd store cannot be written.
    """
    started = time.monotonic()
    summary = ImportSummary(tracking_uri)
    writer = RunWriter(store)
    scratch = tempfile.mkdtemp(prefix="mlcd-mlflow-import-")
    plan = _Plan(tracking_uri, registry_uri, tuple(experiments), store.url, artifacts, scratch)
    total: int | None = None
    done = 0
    try:
        for message in _pages(plan):
            kind = message[0]
            if kind == "error":
                raise _rebuild(*message[1:])
            if kind == "start":
                summary.experiments = [e.name for e in message[1]]
                total = message[2]
                continue
            if kind == "done":
                break
            found, prepared = message[1], message[2]
            summary.runs_found += found
            already = found - len(prepared)
            summary.runs.skipped += already
            for run in prepared:
                _store_folders(objects, run)
            for batch in batches(prepared):
                summary.runs.add(writer.write(batch))
                done += len(batch)
                if progress is not None:
                    progress("runs", done, total)
            for run in prepared:
                for _, folder in run.folders:
                    if Path(folder).is_relative_to(scratch):
                        shutil.rmtree(folder, ignore_errors=True)
            done += already
            if progress is not None:
                progress("runs", done, total)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary.parents_linked = link_parents(store)
    if models or model_names:
        from mlcd.adopt.mlflow_models import import_models

        source = MlflowSource(tracking_uri, registry_uri)
        summary.models = import_models(
            source, store, objects, names=model_names, trust=trust, progress=progress
        )
    summary.seconds = time.monotonic() - started
    details = summary.to_dict()
    store.transact(lambda conn: events.record(conn, "import.mlflow", details=details))
    return summary
