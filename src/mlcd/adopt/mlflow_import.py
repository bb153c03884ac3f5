"""``mlcd import mlflow``: an MLflow tracking store (and registry) into an mlcd project.

What moves: experiments (each run carries ``mlflow.experiment_id`` / ``mlflow.experiment_name``
tags), runs with their name, user, status, start and end times, git commit, params, tags
(MLflow's own included) and every metric point with its step and timestamp, parent/child
links, every artifact file (stored content-addressed and recorded on the run), MLflow 3 logged
models' files (recorded on the run that logged them, under the model's name), and, with
``models``, registered models (see ``mlflow_models``).

How: a page of runs at a time is read (runs through ``search_runs``, metric histories in bulk,
see ``mlflow_source``), the runs already imported are left out before anything else is read,
artifacts are stored, and the page is written in transactions of whole runs (see
``mlflow_runs``). A reader thread fetches the next page while the current one is written.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.adopt.mlflow_models import ModelOutcome, import_models
from mlcd.adopt.mlflow_runs import (
    PreparedRun,
    RunWriter,
    WriteCounts,
    batches,
    link_parents,
    needs_import,
    present,
)
from mlcd.adopt.mlflow_source import LoggedModelRef, MlflowSource, SourceExperiment, SourceRun
from mlcd.objects import ObjectStore
from mlcd.objects.base import iter_files
from mlcd.store import Store, events
from mlcd.store.runs import ArtifactRef

#: ``progress(phase, done, total)``: phase is ``runs`` or ``models``; total may be None.
Progress = Callable[[str, int, int | None], None]


@dataclass
class ImportSummary:
    """What an import read and wrote."""

    tracking_uri: str
    experiments: list[str] = field(default_factory=list)
    runs_found: int = 0
    runs: WriteCounts = field(default_factory=WriteCounts)
    parents_linked: int = 0
    models: list[ModelOutcome] = field(default_factory=list)
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


def _store_folder(objects: ObjectStore, folder: Path, prefix: str) -> list[ArtifactRef]:
    files = list(iter_files(folder))
    if not files:
        return []
    digests = objects.put_files([(full, None) for _, full in files])
    return [
        ArtifactRef(
            "artifact", f"{prefix}/{rel}" if prefix else rel, str(digest), full.stat().st_size
        )
        for (rel, full), digest in zip(files, digests, strict=True)
    ]


def _artifacts(
    source: MlflowSource,
    objects: ObjectStore,
    run: SourceRun,
    logged: Sequence[LoggedModelRef],
) -> list[ArtifactRef]:
    """Store the run's artifact files (and its logged models' files); returns their records."""
    refs: list[ArtifactRef] = []
    with tempfile.TemporaryDirectory(prefix="mlcd-mlflow-") as tmp:
        folder = source.run_artifacts(run, Path(tmp) / "run")
        if folder is not None:
            refs.extend(_store_folder(objects, folder, ""))
        names = Counter(m.name for m in logged)
        for model in logged:
            prefix = model.name if names[model.name] == 1 else f"{model.name}-{model.id}"
            files = source.folder(model.artifact_uri, Path(tmp) / "models" / model.id)
            refs.extend(_store_folder(objects, files, prefix))
    return refs


class _Reader(threading.Thread):
    """Reads pages of runs ahead of the writer (one page in hand, one in the queue)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(name="mlcd-mlflow-reader", daemon=True)
        self.pages: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self._work = work

    def put(self, item: Any) -> None:
        """Hand a page to the writer (gives up once the writer has stopped)."""
        while not self.stop.is_set():
            try:
                self.pages.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            self._work()
            self.put(None)
        except BaseException as exc:  # handed to the writer's thread, raised there
            self.put(exc)


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
    source = MlflowSource(tracking_uri, registry_uri)
    chosen = source.experiments(experiments)
    by_id = {e.id: e for e in chosen}
    summary = ImportSummary(tracking_uri, [e.name for e in chosen])
    ids = list(by_id)
    total = source.count_runs(ids)
    logged = source.logged_models(ids) if artifacts and ids else {}
    writer = RunWriter(store)
    done = 0

    def read_pages() -> None:
        for page in source.runs(ids):
            if reader.stop.is_set():
                return
            with store.read() as conn:
                status = present(conn, [r.id for r in page])
            todo = [r for r in page if needs_import(r, status.get(r.id))]
            histories = source.metric_histories(todo)
            prepared = [
                PreparedRun(
                    r,
                    by_id.get(r.experiment_id) or SourceExperiment(r.experiment_id, ""),
                    histories[r.id],
                    _artifacts(source, objects, r, logged.get(r.id, ())) if artifacts else [],
                )
                for r in todo
            ]
            reader.put((len(page), prepared))

    reader = _Reader(read_pages)
    reader.start()
    try:
        while True:
            item = reader.pages.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            found, prepared = item
            summary.runs_found += found
            skipped_before = found - len(prepared)
            summary.runs.skipped += skipped_before
            for batch in batches(prepared):
                summary.runs.add(writer.write(batch))
                done += len(batch)
                if progress is not None:
                    progress("runs", done, total)
            done += skipped_before
            if progress is not None:
                progress("runs", done, total)
    finally:
        reader.stop.set()
        reader.join()
    summary.parents_linked = link_parents(store)
    if models or model_names:
        summary.models = import_models(
            source, store, objects, names=model_names, trust=trust, progress=progress
        )
    summary.seconds = time.monotonic() - started
    details = summary.to_dict()
    store.transact(lambda conn: events.record(conn, "import.mlflow", details=details))
    return summary
