"""``exp sweep --register-best``: register the best trial's declared models, judge them.

The best trial's outputs are restored (by digest, from its stored ``mlcd.lock``) into a
workspace like an experiment's; each model declared under ``models:`` whose package the trial
produced is registered with the trial's run as its lineage (as ``mlcd run`` does), then
evaluated against the ``champion`` alias on the model's ``eval_data`` with the champion's gates
(as ``mlcd ci`` does). Nothing is promoted: the evaluation is recorded and its verdict shown.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import MlcdError
from mlcd.layout import STATE_DIR
from mlcd.pipeline.plan import Services

if TYPE_CHECKING:
    from mlcd.config import Config

CHAMPION = "champion"


def _restore_trial(root: Path, services: Services, run_id: str, workspace: Path) -> None:
    from mlcd.digest import Digest
    from mlcd.errors import PipelineError
    from mlcd.experiments.run import LOCK_ARTIFACT, PARAMS_PREFIX
    from mlcd.experiments.workspace import build_workspace, stage_paths
    from mlcd.pipeline.lockfile import LOCK_FILE, parse_lock
    from mlcd.pipeline.outputs import restore_outputs
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.statcache import StatCache
    from mlcd.store import runs

    objects = services.objects
    with services.store.read() as conn:
        refs = [a for a in runs.artifacts_of(conn, run_id) if a.role == "artifact"]
    lock_ref = next((a for a in refs if a.path == LOCK_ARTIFACT), None)
    if lock_ref is None:
        raise PipelineError(f"the best trial (run {run_id[:12]}) kept no mlcd.lock")
    main = load_snapshot(root)
    produced, deps = stage_paths(main.stages.values())
    build_workspace(root, workspace, produced, deps)
    for ref in refs:
        if ref.path.startswith(PARAMS_PREFIX):
            target = workspace / ref.path.removeprefix(PARAMS_PREFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # may be a hard link to the work tree's file
            target.write_bytes(objects.get_bytes(Digest.parse(ref.digest)))
    lock_text = objects.get_bytes(Digest.parse(lock_ref.digest)).decode("utf-8")
    (workspace / LOCK_FILE).write_text(lock_text, encoding="utf-8")
    lock = parse_lock(lock_text, workspace / LOCK_FILE)
    outputs = {p: d for entry in lock.values() for p, d in entry.outs.items()}
    (workspace / STATE_DIR).mkdir(exist_ok=True)
    with StatCache(workspace / STATE_DIR / "statcache.db") as statcache:
        restore_outputs(objects, statcache, workspace, outputs, {})


def register_best(
    root: Path, config: Config, services: Services, shown: dict[str, Any]
) -> list[dict[str, Any]]:
    """Register and evaluate the best trial's declared models; one dict per model.

    Each dict has ``model``, ``version``, ``created``, ``evaluation`` (the verdict, or None)
    and a one-line ``summary``. A model that cannot be evaluated (no champion yet, no
    ``eval_data``) is registered and says why it was not compared.
    """
    from mlcd.evaluate import evaluate, record_evaluation
    from mlcd.registration import register_declared_models
    from mlcd.store import models as repo

    best = shown["sweep"].get("best")
    if not best:
        return [{"model": None, "summary": "no best trial (no trial finished with the objective)"}]
    if not config.models:
        return [{"model": None, "summary": "no model declared under models: nothing to register"}]
    store, objects = services.store, services.objects
    workspace = root / STATE_DIR / "exp" / f"best-{uuid.uuid4().hex[:8]}"
    workspace.mkdir(parents=True)
    out: list[dict[str, Any]] = []
    try:
        _restore_trial(root, services, best, workspace)
        registered = register_declared_models(
            workspace, config, store, objects, best, list(config.models)
        )
        for item in registered:
            row: dict[str, Any] = {
                "model": item.model,
                "version": item.version,
                "created": item.created,
                "run_id": best,
                "evaluation": None,
            }
            spec = config.models[item.model]
            if item.version is None:
                row["summary"] = f"{item.model}: not registered ({item.note})"
                out.append(row)
                continue
            ref = f"{item.model} v{item.version} (trial run {best[:12]})"
            with store.read() as conn:
                champion = repo.get_alias(conn, item.model, CHAMPION)
            if champion is None or not spec.eval_data:
                why = "no champion yet" if champion is None else "no eval_data declared"
                row["summary"] = f"registered {ref}; not evaluated: {why}"
                out.append(row)
                continue
            try:
                evaluation = evaluate(
                    store,
                    objects,
                    item.model,
                    item.version,
                    data=workspace / spec.eval_data,
                    target=spec.target,
                    task=spec.task,
                    against=CHAMPION,
                    gates=list(config.gates.get(CHAMPION, [])),
                    gates_alias=CHAMPION,
                    cache_dir=root / STATE_DIR / "cache" / "models",
                )
                record_evaluation(store, objects, evaluation)
                row["evaluation"] = {
                    "status": evaluation.status,
                    "passed": evaluation.passed,
                    "summary": evaluation.verdict.summary(),
                }
                row["summary"] = f"registered {ref}; against {CHAMPION}: " + (
                    evaluation.verdict.summary()
                )
            except MlcdError as exc:
                row["summary"] = f"registered {ref}; evaluation failed: {exc.message}"
            out.append(row)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return out
