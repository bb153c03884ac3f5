"""Plan: the values a pipeline run is made of — options, per-stage results, the reporter —
and which stages a run selects and forces.

Shared by ``runner`` (which decides whether anything must run) and ``execution`` (which
runs it), so neither imports the other's module for its types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcd.pipeline.snapshot import Snapshot

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.store import Store


#: Outcomes that make a run fail.
FAILED = ("failed", "blocked")


@dataclass(frozen=True)
class RunOptions:
    """How to run: which stages, and whether to force, parallelise or only plan."""

    targets: tuple[str, ...] = ()
    force: bool = False
    jobs: int | None = None
    dry_run: bool = False
    executor: str = "local"
    force_upstream: bool = False
    single: bool = False


def check_pipeline(snapshot: Snapshot) -> None:
    """Every check ``run`` makes before anything runs (``mlcd config validate`` calls it too).

    Raises:
        ConfigError: a cycle, overlapping outs, a dep nothing produces and that does not
            exist, or a declared param that does not exist.
    """
    from mlcd.pipeline.fingerprint import stage_params

    dag = snapshot.dag
    dag.check_deps_exist(snapshot.root)
    for spec in snapshot.stages.values():
        stage_params(spec, snapshot.params)


def plan_stages(snapshot: Snapshot, options: RunOptions) -> list[str]:
    """The stages a run considers, in order: targets and their upstream (only targets if single).

    Raises:
        UsageError: a target is not a stage, ``--single`` without a target, or a dep of a
            ``--single`` stage that is missing (its upstream stage would have made it).
    """
    import os

    from mlcd.errors import UsageError

    dag = snapshot.dag
    selected = dag.select(options.targets)
    if not options.single:
        return selected
    if not options.targets:
        raise UsageError("--single needs the stage(s) to run", hint="mlcd run --single STAGE")
    missing = [
        f"stage '{name}' needs '{dep}'"
        for name in options.targets
        for dep in snapshot.stages[name].deps
        if not os.path.exists(dep if os.path.isabs(dep) else snapshot.root / dep)
    ]
    if missing:
        raise UsageError(
            "; ".join(missing) + ", which does not exist (--single does not run upstream stages)",
            hint="run it without --single to build its upstream stages first, or 'mlcd pull'",
        )
    return [name for name in selected if name in options.targets]


def forced_stages(snapshot: Snapshot, options: RunOptions) -> frozenset[str]:
    """Stages that run even when up to date.

    ``--force`` forces the named stages (every stage when none is named); ``--force-upstream``
    forces the named stages and everything they depend on.
    """
    if not (options.force or options.force_upstream):
        return frozenset()
    if options.force_upstream or not options.targets:
        return frozenset(plan_stages(snapshot, options))
    return frozenset(options.targets)


@dataclass(frozen=True)
class StageResult:
    """What happened to one stage, and why."""

    stage: str
    outcome: str  # ran | cached | skipped | failed | blocked | (dry run) run | restore
    reason: str
    duration_s: float = 0.0
    fingerprint: str | None = None
    reasons: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    log_tail: str | None = None
    log_path: str | None = None
    restored: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "outcome": self.outcome,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "duration_s": round(self.duration_s, 3),
            "fingerprint": self.fingerprint,
            "error": self.error,
            "log": self.log_path,
            "restored": list(self.restored),
        }


@dataclass
class RunResult:
    """The outcome of ``mlcd run``: the recorded run's id (None if nothing ran) and stages."""

    run_id: str | None
    stages: list[StageResult] = field(default_factory=list)
    dry_run: bool = False

    @property
    def failed(self) -> list[StageResult]:
        """Stages that failed or could not run because an upstream stage failed."""
        return [s for s in self.stages if s.outcome in FAILED]

    @property
    def ok(self) -> bool:
        """True when no stage failed."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "stages": [s.to_dict() for s in self.stages],
        }


class Reporter:
    """Receives progress events; the CLI draws them, the default ignores them."""

    def planned(self, stages: list[str]) -> None:
        """The stages about to be brought up to date, in order."""

    def started(self, stage: str, action: str) -> None:
        """A stage started ``running`` its command or ``restoring`` its outputs."""

    def waiting(self, stage: str, path: str, holder: str) -> None:
        """A stage waits for another run that holds ``path``."""

    def finished(self, result: StageResult) -> None:
        """A stage is done (any outcome)."""


@dataclass
class Services:
    """What a run needs once something must run: the metadata and object stores."""

    store: Store
    objects: ObjectStore
