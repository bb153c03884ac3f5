"""Status: whether each stage is up to date with ``mlcd.lock``, and if not, why.

A stage is up to date when its fingerprint (command, dep digests, param values, env) equals
the one in the lock and every file it produced still has the digest the lock recorded.
Everything here reads files through the stat cache and the snapshot, never the metadata
store, so the answer for an unchanged project takes milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.pipeline.fingerprint import stage_fingerprint, stage_params
from mlcd.pipeline.lockfile import LockEntry
from mlcd.pipeline.snapshot import Snapshot
from mlcd.pipeline.stage import StageSpec
from mlcd.pipeline.statcache import StatCache


@dataclass(frozen=True)
class Reason:
    """Why a stage is stale: a kind (``dep``, ``param``, ``out_missing``, ...) and a message."""

    kind: str
    message: str
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "message": self.message}


@dataclass(frozen=True)
class StageState:
    """A stage's inputs as they are now, its fingerprint, and why it is stale (if it is)."""

    name: str
    fingerprint: str
    deps: dict[str, str | None]
    params: dict[str, dict[str, Any]]
    produced: dict[str, str | None]
    reasons: tuple[Reason, ...] = ()
    upstream: tuple[str, ...] = field(default=())

    @property
    def stale(self) -> bool:
        """Whether the stage itself must run (or be restored)."""
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        status = "stale" if self.reasons else ("upstream" if self.upstream else "up to date")
        return {
            "stage": self.name,
            "status": status,
            "fingerprint": self.fingerprint,
            "reasons": [r.to_dict() for r in self.reasons],
            "upstream_stale": list(self.upstream),
        }


class Digests:
    """Digests of project paths through the stat cache, remembered for one pass."""

    def __init__(self, root: Path, statcache: StatCache) -> None:
        self.root = root
        self.statcache = statcache
        self._memo: dict[str, str | None] = {}

    def full(self, path: str) -> str:
        """The absolute path of a project path."""
        return path if os.path.isabs(path) else str(self.root / path)

    def of(self, path: str) -> str | None:
        """``HEX``/``HEX.dir`` of a path, or None when it does not exist."""
        if path not in self._memo:
            self._memo[path] = self.statcache.path_digest(self.full(path))
        return self._memo[path]

    def forget(self, paths: Iterable[str]) -> None:
        """Drop remembered digests (after a stage wrote these paths)."""
        for path in paths:
            self._memo.pop(path, None)
            prefix = path + "/"
            for key in [k for k in self._memo if k.startswith(prefix)]:
                del self._memo[key]


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _fingerprint_reasons(spec: StageSpec, entry: LockEntry, state: StageState) -> list[Reason]:
    reasons = []
    if entry.cmd != spec.cmd:
        reasons.append(Reason("cmd", f"command changed: '{entry.cmd}' -> '{spec.cmd}'"))
    for path, digest in state.deps.items():
        if path not in entry.deps:
            reasons.append(Reason("dep_added", f"new dep: {path}", path))
        elif entry.deps[path] != digest:
            what = "missing" if digest is None else "changed"
            reasons.append(Reason("dep", f"dep {what}: {path}", path))
    for path in entry.deps:
        if path not in state.deps:
            reasons.append(Reason("dep_removed", f"dep removed: {path}", path))
    for file, values in state.params.items():
        old_values = entry.params.get(file, {})
        for key, value in values.items():
            if key not in old_values:
                reasons.append(Reason("param_added", f"new param: {key}", key))
            elif old_values[key] != value:
                reasons.append(
                    Reason(
                        "param",
                        f"param changed: {key} ({_short(old_values[key])} -> {_short(value)})",
                        key,
                    )
                )
    for file, old_values in entry.params.items():
        for key in old_values:
            if key not in state.params.get(file, {}):
                reasons.append(Reason("param_removed", f"param removed: {key}", key))
    if not reasons:
        reasons.append(
            Reason("definition", "stage definition changed (env, wdir, outs, metrics or plots)")
        )
    return reasons


def _out_reasons(
    spec: StageSpec, entry: LockEntry, produced: Mapping[str, str | None]
) -> list[Reason]:
    reasons = []
    for path, recorded in entry.outs.items():
        if path not in produced:
            continue  # no longer declared: the fingerprint already differs
        current = produced[path]
        if current is None:
            reasons.append(Reason("out_missing", f"out missing: {path}", path))
        elif current != recorded:
            reasons.append(Reason("out_modified", f"out modified: {path}", path))
    for path in (*(o.path for o in spec.outs), *spec.metrics):
        if path not in entry.outs:
            reasons.append(Reason("out_missing", f"out not recorded in mlcd.lock: {path}", path))
    return reasons


def inspect_stage(
    snapshot: Snapshot,
    spec: StageSpec,
    digests: Digests,
    lock: Mapping[str, LockEntry] | None = None,
) -> StageState:
    """The state of one stage as the files are now, against ``lock`` (default: the snapshot's).

    Raises:
        ConfigError: a declared param does not exist.
    """
    deps = {dep: digests.of(dep) for dep in spec.deps}
    params = stage_params(spec, snapshot.params)
    fingerprint = stage_fingerprint(spec, deps, params)
    produced = {path: digests.of(path) for path in spec.produced}
    state = StageState(spec.name, fingerprint, deps, params, produced)
    entry = (snapshot.lock if lock is None else lock).get(spec.name)
    reasons: list[Reason] = []
    if entry is None:
        reasons.append(Reason("new", "never ran (not in mlcd.lock)"))
    else:
        if entry.fingerprint != fingerprint:
            reasons.extend(_fingerprint_reasons(spec, entry, state))
        reasons.extend(_out_reasons(spec, entry, produced))
    if spec.always_run:
        reasons.append(Reason("always_run", "always_run is set"))
    return StageState(spec.name, fingerprint, deps, params, produced, tuple(reasons))


def pipeline_status(
    snapshot: Snapshot,
    statcache: StatCache,
    targets: Iterable[str] = (),
    digests: Digests | None = None,
) -> list[StageState]:
    """The state of the selected stages (all by default) in run order.

    A stage whose own inputs are unchanged but which depends on a stale stage is listed with
    ``upstream`` set: it runs only if that stage's new outputs differ.

    Raises:
        ConfigError: the graph is invalid (cycle, overlapping outs, missing deps), or a
            declared param does not exist.
    """
    dag = snapshot.dag
    dag.check_deps_exist(snapshot.root)
    digests = digests or Digests(snapshot.root, statcache)
    states: dict[str, StageState] = {}
    for name in dag.select(targets):
        state = inspect_stage(snapshot, snapshot.stages[name], digests)
        stale_up = sorted(
            up
            for up in dag.upstream[name]
            if up in states and (states[up].stale or states[up].upstream)
        )
        if stale_up:
            # A dep that a stale upstream stage writes may be restored or rewritten before
            # this stage's turn: such a difference alone does not make this stage stale.
            pending = {p for up in stale_up for p in snapshot.stages[up].produced}
            own = tuple(r for r in state.reasons if not _from_upstream(r, pending))
            state = StageState(
                state.name,
                state.fingerprint,
                state.deps,
                state.params,
                state.produced,
                own,
                tuple(stale_up),
            )
        states[name] = state
    return list(states.values())


def _from_upstream(reason: Reason, pending: set[str]) -> bool:
    if reason.kind not in ("dep", "dep_added") or reason.target is None:
        return False
    target = reason.target
    return any(
        target == p or target.startswith(p + "/") or p.startswith(target + "/") for p in pending
    )
