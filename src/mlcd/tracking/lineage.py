"""Lineage: what made a run's outputs (code, params, data, upstream runs), and which run made a file.

The edges are ``run_artifacts`` rows: a stage's inputs (``role='input'``) and its outputs
(``output``, ``metrics``, ``artifact``), all by digest. An input's digest leads to the run
that wrote it (the latest one that started no later than the run reading it), and so on up.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, select

from mlcd.errors import NotFound
from mlcd.store import runs as repo
from mlcd.store.tables import model_versions, run_artifacts, runs
from mlcd.tracking.query import get

OUTPUT_ROLES = ("output", "metrics", "artifact")
_DIGEST = re.compile(r"^(blake3:)?[0-9a-f]{8,64}(\.dir)?$")


def looks_like_digest(text: str) -> bool:
    """Whether ``text`` could be a digest or a digest prefix (8+ hex characters)."""
    return bool(_DIGEST.match(text))


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: row.get(key)
        for key in ("id", "name", "kind", "status", "started_at", "git_commit", "git_dirty")
    }


def producers(conn: Connection, digest: str) -> list[dict[str, Any]]:
    """Runs that wrote ``digest`` (or a digest starting with it) as an output, oldest first.

    Each item is the run's summary plus ``path``, ``stage``, ``role`` and the full ``digest``.
    """
    digest = digest.removeprefix("blake3:")
    condition = (
        run_artifacts.c.digest == digest
        if len(digest) >= 64
        else run_artifacts.c.digest.startswith(digest)
    )
    stmt = (
        select(
            runs,
            run_artifacts.c.path,
            run_artifacts.c.stage,
            run_artifacts.c.role,
            run_artifacts.c.digest,
        )
        .join(run_artifacts, run_artifacts.c.run_id == runs.c.id)
        .where(condition, run_artifacts.c.role.in_(OUTPUT_ROLES))
        .order_by(runs.c.started_at, run_artifacts.c.id)
        .limit(1000)
    )
    found = []
    for row in conn.execute(stmt).mappings():
        item = _summary(dict(row))
        item.update(path=row["path"], stage=row["stage"], role=row["role"], digest=row["digest"])
        found.append(item)
    return found


def _producer_before(
    conn: Connection, digest: str, run_id: str, started_at: float
) -> dict[str, Any] | None:
    candidates = producers(conn, digest)
    if not candidates:
        return None
    inside = [p for p in candidates if p["id"] == run_id]
    if inside:  # made by an earlier stage of the same run
        return inside[0]
    earlier = [p for p in candidates if p["started_at"] <= started_at]
    return earlier[-1] if earlier else candidates[0]


def run_lineage(conn: Connection, ref: str, depth: int = 3) -> dict[str, Any]:
    """Where a run came from: code, params, stages, inputs with their producers, outputs, models.

    Args:
        conn: a store connection.
        ref: a run id, id prefix or name.
        depth: how many levels of upstream runs to follow.

    Raises:
        NotFound: no such run.
    """
    return _lineage(conn, get(conn, ref).id, depth, set())


def _lineage(conn: Connection, run_id: str, depth: int, seen: set[str]) -> dict[str, Any]:
    seen.add(run_id)
    record = get(conn, run_id)
    artifacts = repo.artifacts_of(conn, run_id)
    inputs = []
    upstream_ids: list[str] = []
    for ref in artifacts:
        if ref.role != "input":
            continue
        producer = _producer_before(conn, ref.digest, run_id, record.started_at)
        produced_by = None
        if producer is not None:
            produced_by = {
                "run_id": producer["id"],
                "run_name": producer["name"],
                "stage": producer["stage"],
                "path": producer["path"],
                "same_run": producer["id"] == run_id,
            }
            if producer["id"] != run_id and producer["id"] not in upstream_ids:
                upstream_ids.append(producer["id"])
        inputs.append(
            {"path": ref.path, "digest": ref.digest, "stage": ref.stage, "produced_by": produced_by}
        )
    outputs = [
        {"path": a.path, "digest": a.digest, "role": a.role, "stage": a.stage, "size": a.size}
        for a in artifacts
        if a.role in OUTPUT_ROLES
    ]
    stages = [
        {
            "stage": s["stage"],
            "outcome": s["outcome"],
            "fingerprint": s["fingerprint"],
            "reason": s["reason"],
        }
        for s in repo.stages_of(conn, run_id)
    ]
    models = [
        {"model": m.model, "version": m.version, "digest": m.digest}
        for m in conn.execute(
            select(model_versions.c.model, model_versions.c.version, model_versions.c.digest)
            .where(model_versions.c.run_id == run_id)
            .order_by(model_versions.c.model, model_versions.c.version)
        )
    ]
    parent = None
    if record.parent_id:
        try:
            parent = _summary(repo.get_run(conn, record.parent_id))
        except NotFound:
            parent = {"id": record.parent_id}
    upstream = []
    for upstream_id in upstream_ids:
        if depth <= 0 or upstream_id in seen:
            upstream.append({"run": {"id": upstream_id}, "truncated": True})
        else:
            upstream.append(_lineage(conn, upstream_id, depth - 1, seen))
    return {
        "run": {
            "id": record.id,
            "name": record.name,
            "kind": record.kind,
            "status": record.status,
            "started_at": record.started_at,
            "user": record.user,
        },
        "code": {"git_commit": record.git_commit, "git_dirty": record.git_dirty},
        "params": record.params,
        "stages": stages,
        "inputs": inputs,
        "outputs": outputs,
        "models": models,
        "parent": parent,
        "upstream": upstream,
    }
