"""Reusing a stored evaluation: promotion right after ``mlcd evaluate`` does not score again.

An evaluation's key is the digest of everything its result depends on: the candidate's and
the champion's package digests, the data digest, the gate expressions and their alias, the
slices and the settings (target, task, resamples, confidence, seed, and the candidate run's
metrics when a gate reads them). ``mlcd evaluate`` records the key with its report; a
promotion with the same key reads that report back instead of scoring again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mlcd.digest import Digest
from mlcd.errors import MlcdError, NotFound
from mlcd.evaluate.bootstrap import Delta
from mlcd.evaluate.evaluation import (
    Evaluation,
    ModelResult,
    considered_windows,
    evaluation_key,
    run_metrics_of,
)
from mlcd.evaluate.gate import Gate, GateResult, GateVerdict, parse_gates
from mlcd.objects import ObjectStore
from mlcd.registry import ModelPackage, content_digest, fetch, get_version, resolve
from mlcd.registry.context import default_cache_dir
from mlcd.store import Store, events


def find_reusable(
    store: Store,
    objects: ObjectStore,
    name: str,
    version: int,
    *,
    data: str | os.PathLike[str],
    gates: Sequence[str],
    alias: str,
    against: str,
    slices: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
    cache_dir: str | os.PathLike[str] | None = None,
) -> Evaluation | None:
    """The stored evaluation of exactly these inputs, or None (then evaluate afresh)."""
    try:
        candidate = get_version(store, name, version)
        try:
            champion: str | None = resolve(store, f"{name}@{against}").digest
        except NotFound:
            champion = None
        parsed = parse_gates(list(gates), f"gates.{alias}")
        run_metrics = None
        if any(g.kind == "run" for g in parsed):
            folder = fetch(objects, candidate, cache_dir or default_cache_dir())
            lineage = ModelPackage.read(folder, verify=False).lineage
            run_metrics = run_metrics_of(store, candidate, lineage)
        data_digest = str(content_digest(data))
        champion_version = None if champion is None else resolve(store, f"{name}@{against}")
        windows = considered_windows(store, name, parsed, champion_version, data_digest)
        key = evaluation_key(
            candidate.digest,
            champion,
            data_digest,
            [g.expression for g in parsed],
            alias,
            slices,
            {
                **settings,
                "seed": 0,
                "run_metrics": run_metrics,
                "windows": [w.digest for w in windows],
            },
        )
        with store.read() as conn:
            recorded = events.query(conn, model=name, kind="model.evaluated", limit=50)
        for event in recorded:
            details = event.get("details") or {}
            if details.get("verdict") == "inconclusive":
                continue  # too noisy to judge: measure again rather than reuse it
            if event.get("version") == version and details.get("key") == key:
                digest = str(event["report_digest"])
                stored = json.loads(objects.get_bytes(Digest(digest)))
                evaluation = from_dict(stored)
                evaluation.reused_from = digest
                return evaluation
    except MlcdError:
        return None  # anything missing or changed: evaluate again
    return None


def _result(data: Mapping[str, Any] | None) -> ModelResult | None:
    if data is None:
        return None
    return ModelResult(
        ref=str(data["ref"]),
        version=int(data["version"]),
        digest=str(data["digest"]),
        metrics=_numbers(data.get("metrics") or {}),
        slices={k: _numbers(v) for k, v in (data.get("slices") or {}).items()},
        scored=None,
        confusion=data.get("confusion"),
        calibration=data.get("calibration"),
    )


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float("nan") if v is None else float(v) for k, v in values.items()}


def _verdict(data: Mapping[str, Any]) -> GateVerdict:
    results = []
    for item in data.get("results") or []:
        fields = {f: item.get(f) for f in Gate.__dataclass_fields__}
        results.append(
            GateResult(
                Gate(**fields),
                bool(item["passed"]),
                item.get("observed"),
                item.get("required"),
                item.get("slack"),
                str(item.get("detail", "")),
                item.get("note"),
                inconclusive=item.get("status") == "inconclusive",
            )
        )
    return GateVerdict(data.get("alias"), tuple(results))


def _delta(data: Mapping[str, Any]) -> Delta:
    def number(key: str) -> float:
        value = data.get(key)
        return float("nan") if value is None else float(value)

    return Delta(
        str(data["metric"]),
        number("candidate"),
        number("champion"),
        number("delta"),
        number("low"),
        number("high"),
        number("confidence"),
        number("p_better"),
    )


def from_dict(data: Mapping[str, Any]) -> Evaluation:
    """An evaluation read back from its JSON report (without the scored rows)."""
    candidate = _result(data["candidate"])
    assert candidate is not None
    deltas = {name: _delta(d) for name, d in (data.get("deltas") or {}).items()}
    return Evaluation(
        model=str(data["model"]),
        task=str(data["task"]),
        target=str(data["target"]),
        data_path=str(data["data"]["path"]),
        data_digest=str(data["data"]["digest"]),
        rows=int(data["data"]["rows"]),
        against=str(data["against"]),
        candidate=candidate,
        champion=_result(data.get("champion")),
        deltas=deltas,
        slice_rows={k: int(v) for k, v in (data.get("slice_rows") or {}).items()},
        verdict=_verdict(data["verdict"]),
        classes=data.get("classes"),
        resamples=int(data.get("resamples") or 0),
        confidence=float(data.get("confidence") or 0.95),
        created_at=float(data.get("created_at") or 0.0),
        key=str(data.get("key") or ""),
        windows=list(data.get("windows") or []),
        latency=dict(data.get("latency") or {}),
    )
