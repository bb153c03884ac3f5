"""Scoring a candidate version against the champion on the same held-out data.

Both models predict the same rows; metrics, per-slice metrics, latency and size are taken
for each; the differences get paired bootstrap intervals; the gates decide. Data whose
digest is among the candidate's training inputs (from its lineage) is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from mlcd import notebook
from mlcd.digest import hash_bytes
from mlcd.errors import EvaluationError, NotFound, UsageError
from mlcd.evaluate.bootstrap import Delta, paired_bootstrap
from mlcd.evaluate.gate import Gate, GateVerdict, check_gates, parse_gates
from mlcd.evaluate.latency import LATENCY_METRICS, Timing, measure, paired_noise, serving_threads
from mlcd.evaluate.metrics import (
    Scored,
    calibration,
    confusion,
    expected_calibration_error,
    metrics_for,
    point,
    slice_masks,
)
from mlcd.objects import ObjectStore
from mlcd.registry import (
    LoadedModel,
    ModelPackage,
    ModelVersion,
    content_digest,
    fetch,
    get_version,
    load_model,
    resolve,
)
from mlcd.registry.context import default_cache_dir
from mlcd.store import Store
from mlcd.store.tables import run_artifacts, runs

if TYPE_CHECKING:
    from mlcd.logdata.windows import Window

#: ``progress(step, done=None, total=None)``: the library says what it does; the CLI draws it.
log = logging.getLogger("mlcd.evaluate")

Progress = Callable[..., None]


@dataclass
class ModelResult:
    """One model's side of an evaluation."""

    ref: str
    version: int
    digest: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    #: the scored rows (None for an evaluation read back from its stored report)
    scored: Scored | None = field(repr=False)
    confusion: list[list[int]] | None = None
    calibration: dict[str, list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "version": self.version,
            "digest": self.digest,
            "metrics": self.metrics,
            "slices": self.slices,
            "confusion": self.confusion,
            "calibration": self.calibration,
        }


@dataclass
class Evaluation:
    """The whole comparison: both models, the deltas, the slices and the gate verdict."""

    model: str
    task: str
    target: str
    data_path: str
    data_digest: str
    rows: int
    against: str
    candidate: ModelResult
    champion: ModelResult | None
    deltas: dict[str, Delta]
    slice_rows: dict[str, int]
    verdict: GateVerdict
    classes: list[Any] | None
    resamples: int
    confidence: float
    created_at: float = field(default_factory=time.time)
    #: identity of the inputs (models, data, gates, settings): an equal key, an equal result
    key: str = ""
    #: when read back from a stored report: that report's digest
    reused_from: str | None = None
    #: the no-forgetting gate's past windows: name, rows, both sides' metrics, paired deltas
    windows: list[dict[str, Any]] = field(default_factory=list)
    #: how latency was measured and how noisy it was (see :func:`latency_report`)
    latency: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return self.verdict.passed

    @property
    def status(self) -> str:
        """``passed``, ``failed`` or ``inconclusive`` (a latency too noisy to judge)."""
        return self.verdict.status

    def _repr_html_(self) -> str:
        """The verdict, the metrics side by side and each gate, inline in Jupyter."""
        champion = self.champion.metrics if self.champion else {}
        metrics = [
            [
                name,
                value,
                champion.get(name),
                self.deltas[name].delta if name in self.deltas else None,
            ]
            for name, value in sorted(self.candidate.metrics.items())
        ]
        gates = [
            [
                r.gate.expression,
                {"passed": "pass", "failed": "fail"}.get(r.status, r.status),
                r.observed,
                r.detail,
            ]
            for r in self.verdict.results
        ]
        return notebook.fragment(
            f"{self.model} v{self.candidate.version} against {self.against}",
            self.passed,
            [f"data {self.data_path} ({self.rows} rows), {self.resamples} resamples"],
            notebook.table(["metric", "candidate", "champion", "delta"], metrics),
            notebook.table(["gate", "result", "observed", "detail"], gates) if gates else "",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "target": self.target,
            "data": {"path": self.data_path, "digest": self.data_digest, "rows": self.rows},
            "against": self.against,
            "passed": self.passed,
            "status": self.status,
            "candidate": self.candidate.to_dict(),
            "champion": None if self.champion is None else self.champion.to_dict(),
            "deltas": {k: v.to_dict() for k, v in self.deltas.items()},
            "slice_rows": self.slice_rows,
            "verdict": self.verdict.to_dict(),
            "classes": self.classes,
            "resamples": self.resamples,
            "confidence": self.confidence,
            "created_at": self.created_at,
            "key": self.key,
            "windows": self.windows,
            "latency": self.latency,
        }


# ---------------------------------------------------------------- data
def read_table(path: str | os.PathLike[str]) -> Any:
    """Read evaluation data: Parquet (file or folder), CSV, JSON lines.

    Raises:
        UsageError: missing path or an unknown format.
    """
    from mlcd.logdata.tables import read_table as read

    return read(path, "evaluation data")


def training_digests(store: Store, version: ModelVersion, lineage: Mapping[str, Any]) -> set[str]:
    """Digests of the data the version was trained on: its package lineage, and the inputs
    its run recorded (only the producing stage's, when the lineage names it)."""
    found = {str(v) for v in (lineage.get("data") or {}).values()}
    run_id = version.run_id or lineage.get("run_id")
    if run_id:
        stmt = select(run_artifacts.c.digest, run_artifacts.c.stage).where(
            run_artifacts.c.run_id == run_id, run_artifacts.c.role == "input"
        )
        stage = lineage.get("stage")
        with store.read() as conn:
            rows = [(str(d), s) for d, s in conn.execute(stmt)]
        if stage and any(s == stage for _, s in rows):
            rows = [(d, s) for d, s in rows if s == stage]
        found.update(d for d, _ in rows)
    return found


def refuse_training_data(
    store: Store,
    version: ModelVersion,
    lineage: Mapping[str, Any],
    data_path: str,
    data_digest: str,
) -> None:
    """Raise if ``data_digest`` is among the candidate's training inputs.

    Raises:
        UsageError: the evaluation data was used to train the candidate.
    """
    if data_digest in training_digests(store, version, lineage):
        raise UsageError(
            f"refusing to evaluate {version.ref} on {data_path}: that data (digest "
            f"{data_digest[:12]}) is among the data the model was trained on",
            hint="evaluate on held-out data the training stage never read (e.g. a separate "
            "test split declared as its own file)",
        )


def run_metrics_of(
    store: Store, version: ModelVersion, lineage: Mapping[str, Any]
) -> dict[str, float] | None:
    """Latest metrics of the run that made ``version`` (its child runs fill in missing keys),
    or None when the version has no run."""
    from mlcd.store.runs import latest_metrics_of

    run_id = version.run_id or lineage.get("run_id")
    if not run_id:
        return None
    with store.read() as conn:
        found = dict(latest_metrics_of(conn, str(run_id)))
        children = conn.execute(select(runs.c.id).where(runs.c.parent_id == str(run_id)))
        for (child,) in list(children):
            for key, value in latest_metrics_of(conn, str(child)).items():
                found.setdefault(key, value)
    return found


def evaluation_key(
    candidate: str,
    champion: str | None,
    data: str,
    gates: Sequence[str],
    alias: str,
    slices: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
) -> str:
    """The digest of an evaluation's inputs."""

    def plain(value: Any) -> Any:
        dump = getattr(value, "model_dump", None)
        return dump() if callable(dump) else str(value)

    document = {
        "candidate": candidate,
        "champion": champion,
        "data": data,
        "gates": list(gates),
        "alias": alias,
        "slices": dict(slices or {}),
        "settings": dict(settings),
    }
    return hash_bytes(json.dumps(document, sort_keys=True, default=plain).encode()).hex


# ---------------------------------------------------------------- encoding
def _key(value: Any) -> str:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class _Labels:
    """Class labels in one shared order for both models and the ground truth."""

    def __init__(self, classes: Sequence[Any]) -> None:
        self.classes: list[Any] = list(classes)
        self.index = {_key(c): i for i, c in enumerate(self.classes)}

    def codes(self, values: Any) -> np.ndarray:
        """Class indices of ``values``; labels never seen before are appended as classes."""
        import pandas as pd

        # Map the few distinct labels, not every row.
        inverse, uniques = pd.factorize(pd.Series(np.asarray(values, dtype=object)))
        lookup = np.empty(len(uniques), dtype=np.int64)
        for position, value in enumerate(uniques):
            key = _key(value)
            if key not in self.index:
                self.index[key] = len(self.classes)
                self.classes.append(value.item() if hasattr(value, "item") else value)
            lookup[position] = self.index[key]
        if (inverse < 0).any():
            raise EvaluationError(
                "the labels or predictions contain nulls",
                hint="drop rows without a label from the evaluation data",
            )
        return lookup[inverse]

    def align(self, proba: np.ndarray | None, classes: Sequence[Any] | None) -> np.ndarray | None:
        if proba is None or classes is None:
            return None
        out = np.zeros((proba.shape[0], len(self.classes)))
        for column, label in enumerate(classes):
            key = _key(label)
            if key not in self.index:
                continue  # a class the candidate never predicts and the data never has
            out[:, self.index[key]] = proba[:, column]
        return out


def _score(
    model: LoadedModel, X: Any, y: Any, task: str, labels: _Labels | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        predictions = model.predict(X)
        proba = model.predict_proba(X) if task == "classification" else None
    except UsageError:
        raise
    except Exception as exc:
        raise EvaluationError(
            f"model {model.label} failed to predict on the evaluation data: {exc}",
            hint="check that the data has the columns and types of the model's signature",
        ) from exc
    if task == "classification":
        assert labels is not None
        return labels.codes(y), labels.codes(predictions), proba
    return np.asarray(y, dtype=np.float64), np.asarray(predictions, dtype=np.float64), None


def _size_mb(model: LoadedModel) -> float:
    total = sum(f.stat().st_size for f in model.path.rglob("*") if f.is_file())
    return total / (1024 * 1024)


# ---------------------------------------------------------------- evaluate
def evaluate(
    store: Store,
    objects: ObjectStore,
    name: str,
    candidate: int,
    *,
    data: str | os.PathLike[str],
    target: str | None = None,
    task: str | None = None,
    against: str = "champion",
    gates: Sequence[str | Gate] = (),
    gates_alias: str | None = None,
    slices: Mapping[str, Any] | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    latency_rows: int = 200,
    latency_repetitions: int = 5,
    cache_dir: str | os.PathLike[str] | None = None,
    trusted: bool = False,
    progress: Progress | None = None,
) -> Evaluation:
    """Score version ``candidate`` of ``name`` and the ``against`` alias on ``data``.

    Args:
        store: the metadata store.
        objects: the object store with the packages.
        name: the model name.
        candidate: the candidate version number.
        data: held-out evaluation data (Parquet, CSV, JSON lines).
        target: the label column (required unless the data has a column named ``target``).
        task: ``classification`` or ``regression`` (default: from the candidate's package).
        against: the alias of the model to beat (absent: the candidate is the first).
        gates: gate expressions (or parsed gates) to check.
        gates_alias: the alias the gates belong to (for the report).
        slices: ``{name: Slice}`` (``column`` with ``value`` or ``min``/``max``).
        resamples: bootstrap resamples (0 skips the bootstrap).
        confidence: level of the reported intervals.
        seed: bootstrap seed.
        latency_rows: single rows timed per model for the latency budgets.
        latency_repetitions: blocks the timed rows are split into, the candidate and the
            champion alternating block by block; their spread is the measurement's noise.
        cache_dir: the local package cache.
        trusted: allow pickle-based packages.
        progress: called as ``progress(step, done, total)`` before each long step.

    Returns:
        The evaluation, with the gate verdict.

    Raises:
        UsageError: missing data or target, or data the candidate was trained on.
        NotFound: the model or version does not exist.
        ConfigError: an invalid gate expression.
        EvaluationError: a model could not score the data.
    """
    say = progress or (lambda *_args: None)
    asked = {"target": target, "task": task, "resamples": resamples, "confidence": confidence}
    parsed = [g if isinstance(g, Gate) else None for g in gates]
    parsed_gates = [g for g in parsed if g is not None] + parse_gates(
        [g for g in gates if isinstance(g, str)], f"gates.{gates_alias or against}"
    )
    cand_version = get_version(store, name, candidate)
    champ_version = _champion(store, name, against)
    load = dict(store=store, objects=objects, cache_dir=cache_dir, trusted=trusted)
    data_path = str(data)
    if not Path(data_path).exists():
        read_table(data_path)  # raises the helpful "does not exist" error
    say("hashing the evaluation data")
    data_digest = str(content_digest(data_path))
    # The lineage is in model.yaml: check it before paying for the flavor's imports.
    lineage = ModelPackage.read(
        fetch(objects, cand_version, cache_dir or default_cache_dir()), verify=False
    ).lineage
    refuse_training_data(store, cand_version, lineage, data_path, data_digest)
    run_metrics = (
        run_metrics_of(store, cand_version, lineage)
        if any(g.kind == "run" for g in parsed_gates)
        else None
    )
    say(f"loading {cand_version.ref}")
    cand_model = load_model(cand_version.ref, **load)  # type: ignore[arg-type]
    say("reading the evaluation data")
    frame = read_table(data_path)
    target = target or ("target" if "target" in frame.columns else None)
    if target is None or target not in frame.columns:
        raise UsageError(
            f"the evaluation data has no label column {target!r}"
            if target
            else "no label column given",
            hint=f"pass --target COLUMN or set models.{name}.target (columns: "
            f"{', '.join(map(str, frame.columns))})",
        )
    y = frame[target].to_numpy()
    X = frame.drop(columns=[target])
    task = task or cand_model.task
    labels = _Labels(cand_model.classes or []) if task == "classification" else None
    say(f"scoring {cand_version.ref} on {len(frame)} rows")
    y_c, pred_c, proba_c = _score(cand_model, X, y, task, labels)
    champ_model = None
    if champ_version is not None:
        say(f"scoring the {against} {champ_version.ref}")
        champ_model = load_model(champ_version.ref, **load)  # type: ignore[arg-type]
        y_b, pred_b, proba_b = _score(champ_model, X, y, task, labels)
    classes = labels.classes if labels is not None else None
    cand_scored = Scored(
        task, y_c, pred_c, labels.align(proba_c, cand_model.classes) if labels else None, classes
    )
    masks = slice_masks(frame, slices or {})
    say("timing single-row predictions")
    timed = [cand_model] + ([champ_model] if champ_model is not None else [])
    timings = (
        measure(timed, X, rows=latency_rows, repetitions=latency_repetitions, seed=seed)
        if latency_rows > 0 and len(X)
        else []
    )
    say("metrics and slices")
    candidate_result = _result(
        cand_version, cand_model, cand_scored, masks, timings[0] if timings else None
    )
    champion_result = None
    deltas: dict[str, Delta] = {}
    if champ_model is not None and champ_version is not None:
        champ_scored = Scored(
            task,
            y_b,
            pred_b,
            labels.align(proba_b, champ_model.classes) if labels else None,
            classes,
        )
        champion_result = _result(
            champ_version, champ_model, champ_scored, masks, timings[1] if timings else None
        )
        if resamples > 0:
            deltas = paired_bootstrap(
                cand_scored,
                champ_scored,
                metrics_for(task),
                resamples,
                confidence,
                seed,
                progress=lambda done, total: say("bootstrap", done, total),
            )
    slice_pairs = {
        s: (
            candidate_result.slices[s],
            None if champion_result is None else champion_result.slices[s],
        )
        for s in masks
    }
    windows: list[dict[str, Any]] = []
    window_gates = [g for g in parsed_gates if g.kind == "windows"]
    considered = considered_windows(store, name, parsed_gates, champ_version, data_digest)
    if considered and champ_model is not None:
        say(f"scoring both models on {len(considered)} past window(s)")
        windows = past_windows(
            objects,
            considered,
            models=(cand_model, champ_model),
            target=target,
            task=task,
            metrics=sorted({g.metric for g in window_gates}),
            bootstrap=(resamples, confidence, seed),
        )
    latency_info = latency_report(timings, latency_rows, latency_repetitions)
    verdict = check_gates(
        parsed_gates,
        candidate_result.metrics,
        None if champion_result is None else champion_result.metrics,
        deltas,
        slice_pairs,
        alias=gates_alias or against,
        run_metrics=run_metrics,
        windows={w["name"]: (w["candidate"], w["champion"]) for w in windows},
        noise={
            "absolute": latency_info.get("candidate", {}).get("noise", {}),
            "relative": latency_info.get("paired_noise", {}),
        },
    )
    return Evaluation(
        model=name,
        task=task,
        target=target,
        data_path=data_path,
        data_digest=data_digest,
        rows=len(frame),
        against=against,
        candidate=candidate_result,
        champion=champion_result,
        deltas=deltas,
        slice_rows={s: int(m.sum()) for s, m in masks.items()},
        verdict=verdict,
        classes=classes,
        resamples=resamples if champion_result is not None else 0,
        confidence=confidence,
        key=evaluation_key(
            cand_version.digest,
            None if champ_version is None else champ_version.digest,
            data_digest,
            [g.expression for g in parsed_gates],
            gates_alias or against,
            slices,
            {
                **asked,
                "seed": seed,
                "run_metrics": run_metrics,
                "windows": [w.digest for w in considered],
            },
        ),
        windows=windows,
        latency=latency_info,
    )


def latency_report(timings: Sequence[Timing], rows: int, repetitions: int) -> dict[str, Any]:
    """How latency was measured and how noisy it was: thread limit, repetition blocks, each
    model's per-block values and their spread, and the spread of the paired differences."""
    if not timings:
        return {}
    out: dict[str, Any] = {
        "threads": serving_threads(),
        "rows": rows,
        "repetitions": len(timings[0].cpu),
        "order": "candidate and champion alternate block by block (ABBA)",
        "clock": "CPU time of the predicting thread; *_wall_ms: wall clock",
    }
    for side, timing in zip(("candidate", "champion"), timings, strict=False):
        out[side] = {
            "blocks": {m: [round(float(v), 4) for v in timing.blocks(m)] for m in LATENCY_METRICS},
            "noise": timing.noise(),
        }
    if len(timings) > 1:
        out["paired_noise"] = paired_noise(timings[0], timings[1])
    return out


def considered_windows(
    store: Store,
    name: str,
    gates: Sequence[Gate],
    champion: ModelVersion | None,
    data_digest: str,
) -> list[Window]:
    """The past eval windows a no-forgetting gate checks (none without such a gate or a
    champion): every recorded one but the current evaluation data."""
    from mlcd.logdata.windows import list_windows

    if champion is None or not any(g.kind == "windows" for g in gates):
        return []
    return [w for w in list_windows(store, name, "eval") if w.digest != data_digest]


def past_windows(
    objects: ObjectStore,
    considered: Sequence[Window],
    *,
    models: tuple[LoadedModel, LoadedModel],
    target: str,
    task: str,
    metrics: Sequence[str],
    bootstrap: tuple[int, float, int],
) -> list[dict[str, Any]]:
    """Candidate and champion scored on every recorded eval window but the current data.

    Each window gives both sides' point metrics and, for the gate's metrics, the paired
    bootstrap of the difference (the same resampling as the main comparison).
    """
    from mlcd.logdata.windows import window_frame

    resamples, confidence, seed = bootstrap
    out = []
    for window in considered:
        frame = window_frame(objects, window)
        if target not in frame.columns:
            log.warning("window %s has no label column %r: skipped", window.name, target)
            continue
        y = frame[target].to_numpy()
        X = frame.drop(columns=[target])
        cand, champ = models
        labels = _Labels(cand.classes or []) if task == "classification" else None
        sides = []
        for model in (cand, champ):
            y_m, pred, proba = _score(model, X, y, task, labels)
            aligned = labels.align(proba, model.classes) if labels else None
            sides.append(Scored(task, y_m, pred, aligned, labels.classes if labels else None))
        deltas = (
            paired_bootstrap(sides[0], sides[1], list(metrics), resamples, confidence, seed)
            if resamples > 0
            else {}
        )
        out.append(
            {
                "id": window.id,
                "name": window.name,
                "version": window.version,
                "digest": window.digest,
                "rows": len(frame),
                "candidate": point(sides[0]),
                "champion": point(sides[1]),
                "deltas": {k: v.to_dict() for k, v in deltas.items()},
            }
        )
    return out


def _champion(store: Store, name: str, alias: str) -> ModelVersion | None:
    try:
        return resolve(store, f"{name}@{alias}")
    except NotFound:
        return None


def _result(
    version: ModelVersion,
    model: LoadedModel,
    scored: Scored,
    masks: Mapping[str, np.ndarray],
    timing: Timing | None,
) -> ModelResult:
    metrics = point(scored)
    if timing is not None:
        metrics.update({k: v for k, v in timing.metrics().items() if k.startswith("latency_")})
    metrics["size_mb"] = _size_mb(model)
    if scored.task == "classification":
        ece = expected_calibration_error(scored)
        if ece is not None:
            metrics["calibration_error"] = ece
    return ModelResult(
        ref=version.ref,
        version=version.version,
        digest=version.digest,
        metrics=metrics,
        slices={name: point(scored.subset(mask)) for name, mask in masks.items()},
        scored=scored,
        confusion=confusion(scored) if scored.task == "classification" else None,
        calibration=calibration(scored) if scored.task == "classification" else None,
    )
