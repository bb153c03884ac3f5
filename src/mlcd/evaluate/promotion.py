"""Promotion: move an alias to a version only through the gates written for that alias.

A failed gate leaves the alias where it was (and raises ``GateFailed``); so does a gate whose
latency measurement was too noisy to judge (``GateInconclusive``). ``force`` skips the
gates but needs a reason. Every move and every refusal is an audit event with who, from,
to, why and the digest of the stored JSON report. An evaluation of the same inputs stored a
moment ago by ``mlcd evaluate`` is reused, not recomputed (``mlcd.evaluate.reuse``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from mlcd.errors import GateFailed, GateInconclusive, RegistryError, UsageError
from mlcd.evaluate.evaluation import Evaluation, Progress, evaluate
from mlcd.evaluate.reports import render_json, write_reports
from mlcd.evaluate.reuse import find_reusable
from mlcd.objects import ObjectStore
from mlcd.registry import AliasMove, get_version, record_metrics
from mlcd.registry.versions import check_alias, move_alias
from mlcd.store import Store, events
from mlcd.store import models as repo


@dataclass
class Promotion:
    """What a promotion did."""

    name: str
    version: int
    alias: str
    move: AliasMove | None
    evaluation: Evaluation | None = None
    forced: bool = False
    report_digest: str | None = None
    reports: dict[str, Path] = field(default_factory=dict)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "moved": self.move is not None,
            "from_version": None if self.move is None else self.move.from_version,
            "forced": self.forced,
            "report_digest": self.report_digest,
            "reports": {k: str(v) for k, v in self.reports.items()},
            "verdict": None if self.evaluation is None else self.evaluation.verdict.to_dict(),
            "note": self.note,
            "reused_from": None if self.evaluation is None else self.evaluation.reused_from,
        }


def store_report(objects: ObjectStore, evaluation: Evaluation) -> str:
    """Keep the JSON report in the object store; returns its digest (for the audit trail)."""
    return str(objects.put_bytes(render_json(evaluation).encode()))


def transfer(evaluation: Evaluation) -> dict[str, Any]:
    """For events: the forward deltas on the current data and, with a no-forgetting gate, the
    backward transfer (candidate - champion) on each past window."""
    if not evaluation.windows:
        return {}
    return {
        "forward": {m: d.delta for m, d in evaluation.deltas.items()},
        "windows": [
            {
                "name": w["name"],
                "version": w["version"],
                "rows": w["rows"],
                "deltas": {m: d["delta"] for m, d in (w.get("deltas") or {}).items()},
            }
            for w in evaluation.windows
        ],
    }


def promote(
    store: Store,
    objects: ObjectStore,
    name: str,
    version: int,
    alias: str,
    *,
    gates: Sequence[str] = (),
    data: str | os.PathLike[str] | None = None,
    target: str | None = None,
    task: str | None = None,
    slices: Mapping[str, Any] | None = None,
    against: str = "champion",
    force: bool = False,
    reason: str | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    actor: str | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    cache_dir: str | os.PathLike[str] | None = None,
    trusted: bool = False,
    reuse: bool = True,
    progress: Progress | None = None,
    plotly: str = "inline",
) -> Promotion:
    """Move ``alias`` of ``name`` to ``version`` if the alias's gates pass.

    Args:
        store: the metadata store.
        objects: the object store (packages; the JSON report is stored there too).
        name: the model name.
        version: the version to promote.
        alias: the target alias.
        gates: the alias's gate expressions (``mlcd.yaml`` ``gates.<alias>``).
        data: held-out evaluation data (needed when there are gates).
        target: the label column.
        task: classification or regression (default: from the package).
        slices: declared slices for per-slice gates.
        against: the alias relative gates compare with.
        force: skip the gates (``reason`` required).
        reason: why; recorded in the audit trail.
        report_dir: where to write the Markdown/HTML/JSON/JUnit reports.
        actor: who (default: ``MLCD_ACTOR``, the CI identity or the user).
        resamples: bootstrap resamples.
        confidence: level of the reported intervals.
        cache_dir: the local package cache.
        trusted: allow pickle-based packages.
        reuse: reuse a stored evaluation of exactly the same inputs (``mlcd evaluate``'s).
        progress: called as ``progress(step, done, total)`` before each long step.

    Returns:
        What happened (``move`` is None when the alias already pointed there).

    Raises:
        UsageError: ``force`` without ``reason``; gates but no data.
        GateFailed: a gate failed; the alias did not move.
        GateInconclusive: no gate failed, but one could not be judged (a latency noisier
            than its margin); the alias did not move.
        NotFound: no such model or version.
    """
    check_alias(alias)
    if force and not (reason and reason.strip()):
        raise UsageError(
            "--force skips the gates and needs a reason for the audit trail",
            hint='add --reason "why this version must go out without passing its gates"',
        )
    get_version(store, name, version)
    who = actor or events.actor()
    with store.read() as conn:
        current = repo.get_alias(conn, name, alias)
    if current == version:
        return Promotion(name, version, alias, None, note=f"{alias} already points at {version}")
    if force:
        move = store.transact(
            lambda conn: move_alias(
                conn,
                name,
                alias,
                version,
                reason=reason,
                actor=who,
                details={"forced": True, "gates": list(gates)},
            )
        )
        return Promotion(name, version, alias, move, forced=True)
    if not gates:
        move = store.transact(
            lambda conn: move_alias(
                conn, name, alias, version, reason=reason, actor=who, details={"gates": []}
            )
        )
        return Promotion(name, version, alias, move, note=f"no gates declared for '{alias}'")
    if data is None:
        raise UsageError(
            f"alias '{alias}' has gates, so promoting needs evaluation data",
            hint=f"pass --data PATH or set models.{name}.eval_data in mlcd.yaml",
        )
    evaluation = None
    if reuse:
        evaluation = find_reusable(
            store,
            objects,
            name,
            version,
            data=data,
            gates=gates,
            alias=alias,
            against=against,
            slices=slices,
            settings={
                "target": target,
                "task": task,
                "resamples": resamples,
                "confidence": confidence,
            },
            cache_dir=cache_dir,
        )
    if evaluation is None:
        evaluation = evaluate(
            store,
            objects,
            name,
            version,
            data=data,
            target=target,
            task=task,
            against=against,
            gates=gates,
            gates_alias=alias,
            slices=slices,
            resamples=resamples,
            confidence=confidence,
            cache_dir=cache_dir,
            trusted=trusted,
            progress=progress,
        )
    digest = evaluation.reused_from or store_report(objects, evaluation)
    reports = write_reports(evaluation, report_dir, plotly=plotly) if report_dir is not None else {}
    verdict = evaluation.verdict
    details = {
        "verdict": verdict.status,
        "summary": verdict.summary(),
        "against": against,
        "against_version": None if evaluation.champion is None else evaluation.champion.version,
        "data_digest": evaluation.data_digest,
        "reused_from": evaluation.reused_from,
        **transfer(evaluation),
    }
    if not verdict.passed:
        store.transact(
            lambda conn: events.record(
                conn,
                "gate.failed" if verdict.status == "failed" else "gate.inconclusive",
                model=name,
                version=version,
                alias=alias,
                from_version=current,
                actor=who,
                reason=reason,
                report_digest=digest,
                details=details,
            )
        )
        where = f" (report: {reports['md']})" if "md" in reports else ""
        if verdict.status == "inconclusive":
            raise GateInconclusive(
                f"inconclusive: {name}/{version} could not be judged against the gates of "
                f"'{alias}'; the alias stays at {current if current is not None else 'unset'}: "
                f"{verdict.summary()}{where}",
                hint="promote again when the runner is quieter (the latency is measured "
                "afresh), or give the budget more room than the measurement's noise",
            )
        raise GateFailed(
            f"{name}/{version} did not pass the gates of '{alias}'; the alias stays at "
            f"{current if current is not None else 'unset'}: {verdict.summary()}{where}",
            hint="improve the model, or override with --force --reason TEXT (audited)",
        )
    expected = None if evaluation.champion is None else evaluation.champion.version

    def work(conn: Connection) -> AliasMove:
        # The comparison is only valid against the champion it was made with.
        now_against = repo.get_alias(conn, name, against)
        if now_against != expected:
            raise RegistryError(
                f"'{against}' of {name} moved from {expected} to {now_against} while "
                f"{name}/{version} was being evaluated",
                hint="run the promotion again to compare against the new champion",
            )
        return move_alias(
            conn,
            name,
            alias,
            version,
            reason=reason,
            report_digest=digest,
            actor=who,
            details=details,
        )

    move = store.transact(work)
    record_metrics(store, name, version, evaluation.candidate.metrics)
    return Promotion(name, version, alias, move, evaluation, False, digest, reports)


def record_evaluation(store: Store, objects: ObjectStore, evaluation: Evaluation) -> str:
    """Store an evaluation's report and record an ``evaluation`` event; returns the digest."""
    digest = store_report(objects, evaluation)
    store.transact(
        lambda conn: events.record(
            conn,
            "model.evaluated",
            model=evaluation.model,
            version=evaluation.candidate.version,
            alias=evaluation.verdict.alias,
            from_version=None if evaluation.champion is None else evaluation.champion.version,
            report_digest=digest,
            details={
                "verdict": evaluation.status,
                "summary": evaluation.verdict.summary(),
                "data_digest": evaluation.data_digest,
                "key": evaluation.key,
                **transfer(evaluation),
            },
        )
    )
    record_metrics(
        store, evaluation.model, evaluation.candidate.version, evaluation.candidate.metrics
    )
    return digest
