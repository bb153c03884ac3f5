"""What ``mlcd ci`` did: options, steps, stages, models and the verdict, as plain values.

Shared by ``run`` (which fills it) and ``report`` (which renders it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import GateFailed, GateInconclusive, MlcdError, StageFailed

if TYPE_CHECKING:
    from mlcd.evaluate import Evaluation
    from mlcd.pipeline.plan import RunResult
    from mlcd.pipeline.transfer import TransferReport
    from mlcd.tracking.diff import Diff


#: The alias ``mlcd ci`` gates against and promotes to.
CHAMPION = "champion"

#: How each pipeline outcome reads in the report.
STAGE_HOW = {
    "ran": "ran",
    "cached": "restored from the run cache",
    "pulled": "restored from the remote",
    "skipped": "up to date",
    "failed": "failed",
    "blocked": "not run (upstream failed)",
}


@dataclass(frozen=True)
class CiOptions:
    """What ``mlcd ci`` was asked to do."""

    base: str | None = None
    models: tuple[str, ...] = ()
    promote: bool = False
    jobs: int | None = None
    resamples: int = 1000
    trusted: bool = False
    report: Path | None = None
    junit: Path | None = None


@dataclass
class StepError:
    """A step that could not be done (as opposed to a gate that said no)."""

    step: str
    error: MlcdError

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "type": type(self.error).__name__,
            "message": self.error.message,
            "hint": self.error.hint,
        }


@dataclass
class ModelCheck:
    """One model's candidate: its version, its evaluation against the champion, promotion."""

    name: str
    version: int | None = None
    created: bool = False
    champion: int | None = None
    evaluation: Evaluation | None = None
    report_digest: str | None = None
    promoted: bool = False
    promotion_note: str | None = None
    error: StepError | None = None

    @property
    def ref(self) -> str:
        """``name/version`` (or the bare name when registration failed)."""
        return self.name if self.version is None else f"{self.name}/{self.version}"

    @property
    def unchanged(self) -> bool:
        """The candidate is the champion already: the model did not change."""
        return self.version is not None and self.version == self.champion

    @property
    def status(self) -> str:
        """``passed``, ``failed`` (a gate), ``inconclusive`` (a latency too noisy to judge),
        ``unchanged`` or ``error``."""
        if self.error is not None:
            return "error"
        if self.unchanged:
            return "unchanged"
        if self.evaluation is not None and not self.evaluation.passed:
            return self.evaluation.verdict.status
        return "passed"

    def to_dict(self) -> dict[str, Any]:
        evaluation = None
        if self.evaluation is not None:
            import json

            from mlcd.evaluate.reports import render_json

            evaluation = json.loads(render_json(self.evaluation))  # NaN-free, plain numbers
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "created": self.created,
            "champion": self.champion,
            "status": self.status,
            "summary": None if self.evaluation is None else self.evaluation.verdict.summary(),
            "evaluation": evaluation,
            "report_digest": self.report_digest,
            "promoted": self.promoted,
            "promotion_note": self.promotion_note,
            "error": None if self.error is None else self.error.to_dict(),
        }


@dataclass
class StageLine:
    """One stage's outcome as the report shows it."""

    stage: str
    outcome: str  # a key of STAGE_HOW
    duration_s: float = 0.0
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "outcome": self.outcome,
            "how": STAGE_HOW.get(self.outcome, self.outcome),
            "duration_s": round(self.duration_s, 3),
            "detail": self.detail,
        }


@dataclass
class CiResult:
    """Everything ``mlcd ci`` did, in the order it did it."""

    root: Path
    options: CiOptions
    commit: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    remote: str | None = None
    pulled: TransferReport | None = None
    run: RunResult | None = None
    stages: list[StageLine] = field(default_factory=list)
    models: list[ModelCheck] = field(default_factory=list)
    diff: Diff | None = None
    pushed: TransferReport | None = None
    errors: list[StepError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)

    @property
    def failed_stages(self) -> list[StageLine]:
        """Stages that failed or were blocked by a failure."""
        return [s for s in self.stages if s.outcome in ("failed", "blocked")]

    @property
    def gate_failures(self) -> list[ModelCheck]:
        """Models whose candidate failed a gate of ``champion``."""
        return [m for m in self.models if m.status == "failed"]

    @property
    def gate_inconclusive(self) -> list[ModelCheck]:
        """Models whose candidate failed no gate but could not be judged on one."""
        return [m for m in self.models if m.status == "inconclusive"]

    @property
    def all_errors(self) -> list[StepError]:
        """Step errors, including each model's."""
        return [*self.errors, *(m.error for m in self.models if m.error is not None)]

    @property
    def verdict(self) -> str:
        """``error`` (a step broke), ``failed`` (a stage or a gate), ``inconclusive`` (a gate
        could not be judged) or ``passed``."""
        if self.all_errors:
            return "error"
        if self.failed_stages or self.gate_failures:
            return "failed"
        if self.gate_inconclusive:
            return "inconclusive"
        return "passed"

    @property
    def passed(self) -> bool:
        """True when every stage and every gate passed and no step broke."""
        return self.verdict == "passed"

    def check(self) -> None:
        """Raise the error the exit code comes from; return when everything passed.

        Raises:
            MlcdError: the first step that broke (its own class: 2 config/usage, 3 runtime).
            StageFailed: a pipeline stage failed (3).
            GateFailed: a candidate failed a gate of ``champion`` (1).
            GateInconclusive: no gate failed, but one could not be judged (3).
        """
        where = f" (report: {self.reports['md']})" if "md" in self.reports else ""
        errors = self.all_errors
        if errors:
            raise errors[0].error
        if self.failed_stages:
            failed = [s.stage for s in self.failed_stages if s.outcome == "failed"]
            raise StageFailed(
                f"stage(s) failed: {', '.join(failed)}; no model was evaluated{where}",
                hint="read the stage log named in the report, fix the stage and push again",
            )
        if self.gate_failures:
            raise GateFailed(
                "; ".join(
                    f"{m.ref} did not pass the gates of '{CHAMPION}': "
                    f"{m.evaluation.verdict.summary() if m.evaluation else ''}"
                    for m in self.gate_failures
                )
                + where,
                hint="improve the model (params, data or code) and push again; "
                "the champion stays where it is",
            )
        if self.gate_inconclusive:
            raise GateInconclusive(
                "inconclusive: "
                + "; ".join(
                    f"{m.ref} could not be judged against the gates of '{CHAMPION}': "
                    f"{m.evaluation.verdict.summary() if m.evaluation else ''}"
                    for m in self.gate_inconclusive
                )
                + where,
                hint="run again when the runner is quieter (latency is measured afresh), or "
                "give the latency budget more room than the measurement's noise",
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document (``mlcd ci --json``)."""
        return {
            "verdict": self.verdict,
            "passed": self.passed,
            "commit": self.commit,
            "branch": self.branch,
            "base": None
            if self.options.base is None
            else {"ref": self.options.base, "commit": self.base_commit},
            "remote": self.remote,
            "pull": None if self.pulled is None else self.pulled.to_dict(),
            "run_id": None if self.run is None else self.run.run_id,
            "stages": [s.to_dict() for s in self.stages],
            "ran": [s.stage for s in self.stages if s.outcome == "ran"],
            "restored": [s.stage for s in self.stages if s.outcome in ("cached", "pulled")],
            "models": [m.to_dict() for m in self.models],
            "promote": self.options.promote,
            "diff": None if self.diff is None else self.diff.to_dict(),
            "push": None if self.pushed is None else self.pushed.to_dict(),
            "errors": [e.to_dict() for e in self.all_errors],
            "notes": self.notes,
            "reports": {k: str(v) for k, v in self.reports.items()},
        }


# ---------------------------------------------------------------- checks before any work
