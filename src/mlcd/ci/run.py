"""The CI run behind ``mlcd ci``: pull caches, run the pipeline, gate each model, diff, push.

``run_ci`` composes the layers below it and never raises for an outcome: a failed stage, a
failed gate, or an error in one step (pull, pipeline, a model's evaluation, push) is kept
in the ``CiResult``, the reports are written, and ``CiResult.check()`` raises the error the
exit code is taken from. That way a pull-request comment and the JUnit file exist for every
outcome, including the broken ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import (
    ConfigError,
    MlcdError,
    ObjectError,
    UsageError,
)

if TYPE_CHECKING:
    from mlcd.config import Config
    from mlcd.objects import ObjectStore
    from mlcd.pipeline.runner import Reporter, RunResult
    from mlcd.pipeline.snapshot import Snapshot
    from mlcd.store import Store
    from mlcd.tracking.diff import Diff

from mlcd.ci.result import (
    CHAMPION,
    STAGE_HOW,
    CiOptions,
    CiResult,
    ModelCheck,
    StageLine,
    StepError,
)

__all__ = [
    "CHAMPION",
    "STAGE_HOW",
    "CiOptions",
    "CiResult",
    "ModelCheck",
    "StageLine",
    "StepError",
    "run_ci",
]


def _check_options(config: Config, options: CiOptions) -> list[str]:
    """The models to gate; raises for names and settings that cannot work."""
    names = list(options.models) or list(config.models)
    unknown = [n for n in names if n not in config.models]
    if unknown:
        raise UsageError(
            f"--model {', '.join(unknown)}: not declared under 'models:' in mlcd.yaml "
            f"(declared: {', '.join(config.models) or 'none'})",
            hint="pass a declared model name, or declare the model (path, eval_data, target)",
        )
    for name in names:
        if not config.models[name].eval_data:
            raise ConfigError(
                f"models.{name}.eval_data is not set: 'mlcd ci' needs held-out data to "
                "evaluate the candidate against the champion",
                hint=f"set models.{name}.eval_data in mlcd.yaml to a test split no training "
                "stage reads (e.g. data/test.parquet)",
            )
    for report in (options.report, options.junit):
        if report is not None and report.exists() and report.is_dir():
            raise UsageError(
                f"{report} is a folder; --report and --junit take file paths",
                hint="e.g. --report mlcd-report.md --junit mlcd-junit.xml",
            )
    if options.jobs is not None and options.jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {options.jobs})")
    if options.resamples < 0:
        raise UsageError(f"--resamples must be 0 or more (got {options.resamples})")
    return names


def _resolve_base(root: Path, base: str) -> str:
    from mlcd.tracking.git import git_state, resolve_revision

    commit = resolve_revision(root, base)
    if commit is not None:
        return commit
    inside = git_state(root).commit is not None
    raise UsageError(
        f"--base {base!r} is not a git revision in {root}"
        if inside
        else f"--base {base!r}: {root} is not in a git repository with commits",
        hint="fetch the base branch first (git fetch origin main; in GitHub Actions check out "
        "with fetch-depth: 0), or pass a commit, branch or tag that exists"
        if inside
        else "run mlcd ci in a clone of the repository, or leave out --base",
    )


# ---------------------------------------------------------------- the steps
def _stage_lines(snapshot: Snapshot, run: RunResult, pulled: Sequence[str]) -> list[StageLine]:
    """Stage outcomes, with "up to date" stages whose outputs the pull restored as pulled."""
    restored = set(pulled)
    lines = []
    for stage in run.stages:
        outcome = stage.outcome
        produced = snapshot.stages[stage.stage].produced if stage.stage in snapshot.stages else ()
        if outcome == "skipped" and produced and any(p in restored for p in produced):
            outcome = "pulled"
        detail = stage.error if outcome == "failed" else None
        if detail and stage.log_path:
            detail += f" (log: {stage.log_path})"
        lines.append(StageLine(stage.stage, outcome, stage.duration_s, detail))
    return lines


def _check_model(
    root: Path,
    config: Config,
    store: Store,
    objects: ObjectStore,
    snapshot: Snapshot,
    check: ModelCheck,
    run_id: str | None,
    reason: str,
    options: CiOptions,
    say: Callable[[str], None],
) -> None:
    """Register the model's package, evaluate it against the champion, promote if asked.

    Fills ``check`` as it goes, so a step that raises leaves what was done before it.
    """
    from mlcd.evaluate import evaluate, promote, record_evaluation
    from mlcd.registration import register_declared_models
    from mlcd.store import models as repo

    name = check.name
    spec = config.models[name]
    path = root / spec.path
    if not path.is_dir():
        raise ConfigError(
            f"models.{name}.path: {spec.path} does not exist after the pipeline ran",
            hint=f"make a stage declare '{spec.path}' as an out and save the model there "
            "with mlcd.save_model",
        )
    # The same registration as 'mlcd run' and retrains: a new version gets its monitoring
    # reference profile too.
    (registered,) = register_declared_models(root, config, store, objects, run_id, [name], say)
    if registered.version is None:
        raise ConfigError(
            f"models.{name}.path: {spec.path} is not a model package: {registered.note}",
            hint="save the model there with mlcd.save_model",
        )
    check.version = registered.version
    check.created = registered.created
    with store.read() as conn:
        check.champion = repo.get_alias(conn, name, CHAMPION)
    gates = list(config.gates.get(CHAMPION, []))
    # Relative to where mlcd runs (the project root in CI), so reports show 'data/test.csv'.
    data = os.path.relpath(root / spec.eval_data) if spec.eval_data else None
    if check.unchanged:
        say(f"{check.ref} is the {CHAMPION} already (the model did not change): nothing to gate")
        return
    say(f"evaluating {check.ref} against {CHAMPION} ({len(gates)} gate(s))")
    common: dict[str, Any] = dict(
        target=spec.target,
        task=spec.task,
        slices=spec.slices or None,
        resamples=options.resamples,
        cache_dir=snapshot.state_dir / "cache" / "models",
        trusted=options.trusted,
    )
    evaluation = evaluate(
        store,
        objects,
        name,
        check.version,
        data=data or "",
        against=CHAMPION,
        gates=gates,
        gates_alias=CHAMPION,
        **common,
    )
    check.evaluation = evaluation
    check.report_digest = record_evaluation(store, objects, evaluation)
    say(f"{check.ref}: {evaluation.verdict.summary()}")
    if options.promote and evaluation.passed:
        # promote() runs the gates again, against the champion as it is at that moment, and
        # refuses if it moved meanwhile: the evaluation above is not a licence to move it.
        promotion = promote(
            store,
            objects,
            name,
            check.version,
            CHAMPION,
            gates=gates,
            data=data,
            against=CHAMPION,
            reason=reason,
            **common,
        )
        check.promoted = promotion.move is not None
        check.promotion_note = promotion.note
        say(f"{check.ref} promoted to {CHAMPION}" if check.promoted else str(promotion.note))
    elif options.promote:
        judged = "could not be judged" if evaluation.status == "inconclusive" else "failed"
        check.promotion_note = f"not promoted: the gates of '{CHAMPION}' {judged}"


def run_ci(
    root: Path,
    config: Config,
    store: Store,
    objects: ObjectStore,
    remote: ObjectStore | None,
    options: CiOptions | None = None,
    reporter: Reporter | None = None,
    say: Callable[[str], None] | None = None,
) -> CiResult:
    """Pull, run the pipeline, register and gate each model, diff against the base, push.

    Args:
        root: the project root.
        config: the loaded ``mlcd.yaml``.
        store: the metadata store.
        objects: the local object store.
        remote: the remote to pull from and push to (None: no transfer).
        options: base ref, models, promotion, report paths.
        reporter: receives the pipeline's progress events.
        say: receives one line per step (progress for people).

    Returns:
        What happened; the Markdown and JUnit reports are written when asked for. Call
        ``check()`` on it to raise the error that sets the exit code.

    Raises:
        UsageError: an unknown ``--model``, a bad ``--base`` (before any work is done).
        ConfigError: a model without ``eval_data``.
    """
    from mlcd.pipeline.runner import RunOptions, Services, run_pipeline
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.tracking.git import git_state

    options = options or CiOptions()
    say = say or (lambda _line: None)
    names = _check_options(config, options)
    result = CiResult(root=root, options=options)
    if options.base is not None:
        result.base_commit = _resolve_base(root, options.base)
    state = git_state(root)
    result.commit, result.branch = state.commit, state.branch
    if state.dirty:
        result.notes.append("the working tree has uncommitted changes to tracked files")
    snapshot = load_snapshot(root)
    try:
        _transfer_in(result, snapshot, store, objects, remote, say)
        if not result.errors:
            say("running the pipeline")
            try:
                run = run_pipeline(
                    snapshot,
                    lambda: Services(store, objects),
                    RunOptions(jobs=options.jobs),
                    reporter,
                )
            except MlcdError as exc:
                result.errors.append(StepError("pipeline", exc))
            else:
                result.run = run
                pulled = result.pulled.restored if result.pulled else []
                result.stages = _stage_lines(snapshot, run, pulled)
        if result.run is not None and result.run.ok:
            snapshot = load_snapshot(root)  # mlcd.lock changed
            reason = "mlcd ci --promote" + (f" at {result.commit[:12]}" if result.commit else "")
            for name in names:
                check = ModelCheck(name)
                result.models.append(check)
                try:
                    _check_model(
                        root,
                        config,
                        store,
                        objects,
                        snapshot,
                        check,
                        result.run.run_id,
                        reason,
                        options,
                        say,
                    )
                except MlcdError as exc:
                    check.error = StepError(f"model {name}", exc)
            if not names:
                result.notes.append("no models declared under 'models:': nothing to gate")
        if options.base is not None:
            try:
                result.diff = _diff(root, config, store, options.base)
            except MlcdError as exc:
                result.errors.append(StepError("diff", exc))
        _transfer_out(result, store, objects, remote, say)
    finally:
        _write_reports(result)
    return result


def _transfer_in(
    result: CiResult,
    snapshot: Snapshot,
    store: Store,
    objects: ObjectStore,
    remote: ObjectStore | None,
    say: Callable[[str], None],
) -> None:
    from mlcd.pipeline.statcache import StatCache
    from mlcd.pipeline.transfer import pull

    if remote is None:
        result.notes.append(
            "no remote declared: nothing pulled or pushed, every stale stage runs here"
        )
        return
    result.remote = remote.url
    say(f"pulling run-cache entries and objects from {remote.url}")
    try:
        with StatCache(snapshot.state_dir / "statcache.db") as statcache:
            result.pulled = pull(result.root, snapshot, store, objects, remote, statcache)
    except (MlcdError, OSError) as exc:
        result.errors.append(StepError("pull", _transfer_error(exc, "pulling from", remote)))
        return
    if result.pulled.bad:
        from mlcd.pipeline.transfer import bad_items_error

        error = bad_items_error([item.to_dict() for item in result.pulled.bad])
        if any(item.unsafe for item in result.pulled.bad):
            result.errors.append(StepError("pull", error))  # hostile: nothing runs (exit 2)
        else:
            result.notes.append(f"{error.message}; the stages that make them run here")
    if result.pulled.missing:
        result.notes.append(
            f"{len(result.pulled.missing)} object(s) named in mlcd.lock are not on the remote; "
            "the stages that make them run here"
        )


def _transfer_out(
    result: CiResult,
    store: Store,
    objects: ObjectStore,
    remote: ObjectStore | None,
    say: Callable[[str], None],
) -> None:
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.transfer import push

    if remote is None or result.pulled is None:
        return
    say(f"pushing objects and run-cache entries to {remote.url}")
    try:
        result.pushed = push(result.root, load_snapshot(result.root), store, objects, remote)
    except (MlcdError, OSError) as exc:
        result.errors.append(StepError("push", _transfer_error(exc, "pushing to", remote)))


def _transfer_error(exc: Exception, doing: str, remote: ObjectStore) -> MlcdError:
    """An mlcd error for a failed transfer (``transfer`` words driver failures itself; an
    ``OSError`` can still come from the local side)."""
    if isinstance(exc, MlcdError):
        return exc
    return ObjectError(
        f"{doing} the remote {remote.url} failed: {exc}",
        hint="check the remote's url in mlcd.yaml, that it is a folder (or bucket) you can "
        "write to, and its credentials",
    )


def _diff(root: Path, config: Config, store: Store, base: str) -> Diff:
    from mlcd.tracking.diff import compare_snapshots, resolve_side, workspace_snapshot

    old = resolve_side(f"rev:{base}", root, config, store.read)
    return compare_snapshots(old, workspace_snapshot(root, config))


def _write_reports(result: CiResult) -> None:
    from mlcd.ci.report import render_junit, render_markdown, write_text

    options = result.options
    if options.report is not None:
        result.reports["md"] = options.report
    if options.junit is not None:
        result.reports["junit"] = options.junit
    if options.report is not None:
        write_text(options.report, render_markdown(result))
    if options.junit is not None:
        write_text(options.junit, render_junit(result))
