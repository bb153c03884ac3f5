"""One monitoring pass: reference and window -> drift, quality, performance -> a verdict.

The reference is, in order: an explicit file, the profile stored with the model version
(``model_versions.reference_digest``), or ``monitor.reference`` in mlcd.yaml. The window
is an explicit file or the prediction log over ``--since``/``--last`` (the configured
``monitor.window`` by default). The pass fails — and ``mlcd monitor`` exits 1 — when the
drifted share of features reaches ``drift.share_threshold``, a prediction column drifts, a
quality threshold is crossed or the configured performance metric decays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd import notebook
from mlcd.contracts.validate import count_violations
from mlcd.errors import MonitorError, UsageError
from mlcd.monitor.current import WindowSummary, summarise_window
from mlcd.monitor.drift import DriftReport, DriftSettings, detect_drift
from mlcd.monitor.metrics import Tally, Task
from mlcd.monitor.performance import (
    PerformanceReport,
    load_state,
    merge_tallies,
    performance_report,
    tally_pairs,
    update_performance,
)
from mlcd.monitor.profile import ReferenceProfile, load_profile, profile_from_file
from mlcd.monitor.quality import QualityReport, assess_quality
from mlcd.monitor.window import (
    LogReader,
    Window,
    find_segments,
    iter_file_chunks,
    parse_duration,
    summarise_log,
)

if TYPE_CHECKING:
    from mlcd.config import Config
    from mlcd.objects import ObjectStore
    from mlcd.store import Store

#: ``progress(step, done=None, total=None)`` before each step (the CLI draws it)
Progress = Callable[..., None]


@dataclass(frozen=True)
class Subject:
    """What is monitored: a model name and, when resolved, one of its versions."""

    model: str
    alias: str | None = None
    version: int | None = None
    reference_digest: str | None = None
    baseline: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "alias": self.alias, "version": self.version}


@dataclass(frozen=True)
class MonitorReport:
    """Everything one monitoring pass found, and its verdict."""

    subject: Subject
    window: Window
    summary: WindowSummary
    reference: dict[str, Any]
    drift: DriftReport
    quality: QualityReport
    performance: PerformanceReport | None
    warnings: list[str]
    generated_at: float
    elapsed_s: float = 0.0
    #: facts that limit what was judged but are not problems (too small a window...)
    notes: list[str] = field(default_factory=list)
    #: the training data's contract, checked on the window: ``{name, violations: {col:check: n}}``
    contract: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """Failures, notes and each tested column's drift, inline in Jupyter."""
        subject = self.subject.model + (
            f" v{self.subject.version}" if self.subject.version is not None else ""
        )
        columns = [
            [f.name, f.method, f.score, f.threshold, f.status]
            for f in [*self.drift.features, *self.drift.predictions]
        ]
        return notebook.fragment(
            f"monitor {subject}",
            not self.failures,
            [*self.failures, *self.notes],
            notebook.table(["column", "method", "score", "threshold", "status"], columns),
        )

    @property
    def failures(self) -> list[str]:
        """Every threshold crossed, as a sentence (empty when all is well)."""
        found = []
        drift = self.drift
        if drift.dataset_drift:
            names = ", ".join(f.name for f in drift.drifted)
            found.append(
                f"drift in {len(drift.drifted)} of {len(drift.tested)} features "
                f"({drift.share:.0%} >= {drift.share_threshold:.0%}): {names}"
            )
        for p in drift.predictions:
            if p.drifted:
                found.append(f"prediction column '{p.name}' drifted ({p.method} = {p.score:.4g})")
        found += [f"quality: {b}" for b in self.quality.breaches]
        if self.performance is not None and self.performance.decay_reason:
            found.append(f"performance: {self.performance.decay_reason}")
        return found

    @property
    def failed(self) -> bool:
        """Whether any threshold was crossed."""
        return bool(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.subject.model,
            "alias": self.subject.alias,
            "version": self.subject.version,
            "generated_at": self.generated_at,
            "elapsed_s": self.elapsed_s,
            "window": {**self.window.to_dict(), **self.summary.to_dict()},
            "reference": self.reference,
            "failed": self.failed,
            "failures": self.failures,
            "warnings": self.warnings,
            "notes": self.notes,
            "drift": self.drift.to_dict(),
            "quality": self.quality.to_dict(),
            "performance": self.performance.to_dict() if self.performance else None,
            "contract": self.contract,
        }


def resolve_subject(store: Store | None, target: str) -> Subject:
    """The model (and version) ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` names.

    A bare name monitors every version's predictions against the newest version's
    reference. Without a store, or for a model not registered, only the name is known.

    Raises:
        UsageError: a malformed target.
        NotFound: the alias or version does not exist.
    """
    from mlcd.registry.versions import parse_ref, resolve

    name, alias, number = parse_ref(target)
    if store is None:
        if alias or number:
            raise UsageError(
                f"'{target}' names a version, but there is no metadata store to look it up",
                hint="monitor by plain model name with --reference and --current files",
            )
        return Subject(name)
    from mlcd.store import models as repo

    with store.read() as conn:
        if alias is None and number is None:
            rows = repo.versions_of(conn, name)
            row = rows[-1] if rows else None
        else:
            version = resolve(store, target).version
            row = repo.get_version(conn, name, version)
    if row is None:
        return Subject(name, alias)
    return Subject(
        model=name,
        alias=alias,
        version=int(row["version"]) if (alias or number) else None,
        reference_digest=row.get("reference_digest"),
        baseline=dict(row.get("metrics") or {}),
    )


def _reference(
    subject: Subject,
    path: str | Path | None,
    config: Config,
    root: Path,
    objects: ObjectStore | None,
    exclude: list[str],
) -> ReferenceProfile:
    drift = config.monitor.drift
    options: dict[str, Any] = {
        "exclude": exclude,
        "sample_size": drift.sample_size,
        "bins": drift.bins,
    }
    if path is not None:
        return profile_from_file(path, **options)
    if subject.reference_digest:
        if objects is None:
            raise MonitorError("the reference profile is stored, but no object store was given")
        profile = load_profile(objects, subject.reference_digest)
        return ReferenceProfile(
            profile.features,
            profile.rows,
            profile.sample_size,
            profile.bins,
            {**profile.source, "digest": subject.reference_digest},
        )
    if config.monitor.reference:
        configured = Path(config.monitor.reference)
        return profile_from_file(
            configured if configured.is_absolute() else root / configured, **options
        )
    raise UsageError(
        f"no reference data for model '{subject.model}'"
        + (f" version {subject.version}" if subject.version else ""),
        hint="pass --reference PATH (the training or validation data), set monitor.reference "
        "in mlcd.yaml, or store a profile at registration (mlcd.monitor.compute_reference_profile)",
    )


def infer_task(config: Config, model: str, profile: ReferenceProfile) -> Task:
    """The configured task, else classification when outputs look like classes."""
    configured = config.models.get(model)
    if configured is not None and configured.task:
        return configured.task
    if "proba" in profile.features:
        return "classification"
    prediction = profile.features.get("prediction")
    if prediction is not None and prediction.kind == "numeric":
        values = prediction.values
        integral = values.size == 0 or bool((values == values.round()).all())
        if not (integral and prediction.distinct <= 20):
            return "regression"
    return "classification"


def run_monitor(
    *,
    config: Config,
    root: str | Path,
    target: str,
    store: Store | None = None,
    objects: ObjectStore | None = None,
    since: str | None = None,
    last: int | None = None,
    reference: str | Path | None = None,
    current: str | Path | None = None,
    now: float | None = None,
    progress: Progress | None = None,
) -> MonitorReport:
    """Run one monitoring pass.

    Args:
        config: the project's configuration (``monitor`` section, model task and target).
        root: the project root (segment paths and ``monitor.reference`` are relative to it).
        target: ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION``.
        store: the metadata store (needed for the prediction log and stored profiles).
        objects: the object store holding stored profiles.
        since: the window start: ``1h``, ``7d``, a date.
        last: the window is the last N predictions instead.
        reference: an explicit reference file (CSV or Parquet).
        current: an explicit current-window file instead of the prediction log.
        now: the current time (tests pass it).
        progress: called with a short message before each step.

    Returns:
        The report; ``report.failed`` says whether a threshold was crossed.

    Raises:
        UsageError: bad arguments or no reference.
        NotFound: the model version does not exist.
        MonitorError: data that cannot be read.
    """
    started = time.perf_counter()
    say = progress or (lambda *_args: None)
    root = Path(root)
    now = time.time() if now is None else now
    monitor = config.monitor
    window = Window.parse(since, last, now, monitor.window)  # usage errors before any work
    subject = resolve_subject(store, target)
    model_config = config.models.get(subject.model)
    label = (model_config.target if model_config and model_config.target else None) or "label"
    say("reading the reference")
    profile = _reference(subject, reference, config, root, objects, [label])
    settings = DriftSettings.from_config(monitor.drift, getattr(monitor, "min_rows", None))
    warnings: list[str] = []
    notes: list[str] = []
    task = infer_task(config, subject.model, profile)
    file_tallies: dict[str, Tally] = {}
    has_labels: list[bool] = []

    rules = _contract_rules(store, objects, subject)
    violations: dict[str, int] = {}

    def check_contract(chunk: Any) -> None:
        if rules.get("columns"):
            for key, count in count_violations(chunk, rules["columns"]).items():
                violations[key] = violations.get(key, 0) + count

    def on_chunk(chunk: Any) -> None:
        check_contract(chunk)
        if label in chunk.columns and "prediction" in chunk.columns:
            has_labels.append(True)
            merge_tallies(file_tallies, tally_pairs(chunk.dropna(subset=[label]), task, label))

    say("summarising the current window")
    _preload_drift_tests()
    if current is not None:
        window = Window()
        chunks: Any = iter_file_chunks(current)
        summary = summarise_window(
            profile, chunks, max_values=settings.max_values, on_chunk=on_chunk, ignore=[label]
        )
    else:
        if store is None:
            raise UsageError(
                "no current window: pass --current PATH, or run inside a project whose "
                "server logs predictions"
            )
        with store.read() as conn:
            segments = find_segments(conn, subject.model, window, subject.version)
        # Only the columns monitoring reads: the log may carry many more.
        wanted = [*profile.features, *(rules.get("columns") or {}), "ts", "status", "error"]
        wanted = list(dict.fromkeys([*wanted, "version"]))
        reader = LogReader(root, segments, window, version=subject.version, columns=wanted)
        total = reader.total_rows
        say("reading the prediction log", 0, total)
        ruled = list(rules.get("columns") or {})

        def checked(table: Any) -> None:
            # The rule columns only, through pandas as a file's chunks are: the same counts.
            present = [c for c in ruled if c in table.column_names]
            if present:
                check_contract(table.select(present).to_pandas())

        summary = summarise_log(
            profile,
            reader.tables(),
            max_values=settings.max_values,
            on_chunk=checked if ruled else None,
            on_table=lambda: say("reading the prediction log", min(reader.done_rows, total), total),
        )
        if reader.missing:
            warnings.append(
                f"{len(reader.missing)} prediction-log segment(s) registered but missing from "
                f"storage, skipped: {', '.join(reader.missing[:3])}"
            )
    if summary.rows == 0:
        warnings.append(f"the current window ({window.describe()}) has no rows")
    elif summary.accepted == 0:
        warnings.append("every row of the current window was rejected by the server")
    if not profile.outputs:
        notes.append("the reference has no 'prediction' column, so prediction drift is not tested")
    absent = [n for n in profile.outputs if n not in summary.columns and summary.accepted]
    if absent:
        warnings.append(f"the window has no {', '.join(absent)} column: not tested for drift")
    say("testing drift")
    drift = detect_drift(profile, summary.columns, settings)
    short = drift.not_enough
    if short:
        fewest = min(f.n_current for f in short)
        notes.append(
            f"not enough data: {len(short)} column(s) have too few values in the window "
            f"(fewest {fewest}) for their drift method, so their drift is not judged; "
            "widen the window (--since, --last) or set monitor.min_rows"
        )
    quality = assess_quality(
        profile, summary, monitor.max_missing_share, monitor.max_out_of_range_share
    )
    contract: dict[str, Any] = {}
    if rules.get("columns"):
        contract = {"name": rules.get("name"), "rules": rules["columns"], "violations": violations}
        broken = {k: v for k, v in violations.items() if v}
        if broken:
            listed = ", ".join(f"{k} {v}" for k, v in sorted(broken.items()))
            warnings.append(
                f"data contract '{rules.get('name')}' of the training data: rows breaking it "
                f"in the window: {listed}"
            )
    say("joining feedback labels")
    performance = _performance(
        config,
        subject,
        store,
        root,
        window,
        summary,
        task,
        now,
        file_tallies,
        bool(has_labels),
        current is not None,
    )
    return MonitorReport(
        subject=subject,
        window=window,
        summary=summary,
        reference={
            "rows": profile.rows,
            "columns": len(profile.features),
            "sample_size": profile.sample_size,
            **profile.source,
        },
        drift=drift,
        quality=quality,
        performance=performance,
        warnings=warnings,
        notes=notes,
        generated_at=now,
        elapsed_s=time.perf_counter() - started,
        contract=contract,
    )


def _preload_drift_tests() -> None:
    """Import scipy's statistics (the drift tests' p-values need it: about a CPU-second) in
    a thread while the window is summarised, instead of after it."""
    import threading

    def load() -> None:
        try:
            import scipy.stats  # noqa: F401
        except Exception:  # the drift step imports it again, and reports a failure
            return

    threading.Thread(target=load, name="mlcd-preload", daemon=True).start()


def _contract_rules(
    store: Store | None, objects: ObjectStore | None, subject: Subject
) -> dict[str, Any]:
    """The contract in the monitored version's ``model.yaml`` (read alone, not the model)."""
    if store is None or objects is None or subject.version is None:
        return {}
    import yaml

    from mlcd.digest import Digest
    from mlcd.errors import MlcdError
    from mlcd.registry import get_version

    try:
        version = get_version(store, subject.model, subject.version)
        manifest = objects.read_manifest(Digest.parse(version.digest))
        entry = next((e for e in manifest if e.path == "model.yaml"), None)
        if entry is None:
            return {}
        meta = yaml.safe_load(objects.get_bytes(entry.digest)) or {}
    except (MlcdError, yaml.YAMLError):
        return {}
    contract = meta.get("contract") if isinstance(meta, dict) else None
    return dict(contract) if isinstance(contract, dict) else {}


def _performance(
    config: Config,
    subject: Subject,
    store: Store | None,
    root: Path,
    window: Window,
    summary: WindowSummary,
    task: Task,
    now: float,
    file_tallies: dict[str, Tally],
    file_has_labels: bool,
    from_file: bool,
) -> PerformanceReport | None:
    monitor = config.monitor
    common: dict[str, Any] = {
        "task": task,
        "version": subject.version,
        "predictions": summary.accepted,
        "baseline": subject.baseline,
        "metric": monitor.performance_metric,
        "threshold": monitor.performance_threshold,
        "min_labels": monitor.performance_min_labels,
    }
    if from_file:
        if not file_has_labels:
            return None
        return performance_report(file_tallies, start=None, end=None, **common)
    if store is None:
        return None
    horizon = parse_duration(monitor.label_horizon)
    state, _ = update_performance(store, root, subject.model, task, now=now, horizon_s=horizon)
    start = window.start if window.start is not None else summary.first_at
    note = None if state.buckets else "no feedback labels have been joined yet"
    return performance_report(
        state.buckets,
        start=start,
        end=window.end,
        pending=len(state.pending),
        orphaned=state.orphaned,
        note=note,
        **common,
    )


__all__ = ["MonitorReport", "Subject", "load_state", "resolve_subject", "run_monitor"]


#: The event kind of a recorded ``mlcd monitor`` pass (what the UI charts over time).
PASS_EVENT = "monitor.pass"


def record_pass(store: Store, report: MonitorReport, report_digest: str | None = None) -> int:
    """Keep one pass's figures in the audit trail: each column's drift score and status, the
    drifted share, quality breaches and the live metric, for charts over time.

    ``mlcd monitor`` records every pass it makes; ``mlcd watch``'s trigger checks do not (they
    run every interval and would flood the trail).
    """
    from mlcd.store import events

    drift = report.drift
    details = {
        "rows": report.summary.rows,
        "share": drift.share,
        "share_threshold": drift.share_threshold,
        "columns": {
            f.name: {"score": f.score, "status": f.status, "method": f.method, "role": f.role}
            for f in [*drift.features, *drift.predictions]
        },
        "quality": list(report.quality.breaches),
        "failed": report.failed,
    }
    if report.performance is not None:
        details["performance"] = report.performance.to_dict()
    subject = report.subject
    from mlcd.monitor.report import plain

    details = plain(details)  # PostgreSQL's JSON has no NaN
    return store.transact(
        lambda conn: events.record(
            conn,
            PASS_EVENT,
            model=subject.model,
            version=subject.version,
            reason="; ".join(report.failures) or "within thresholds",
            report_digest=report_digest,
            details=details,
        )
    )
