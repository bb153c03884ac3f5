"""LockFile: ``mlcd.lock``, the committed record of each stage's fingerprint and results.

Format (see docs/architecture.md)::

    schema: 1
    stages:
      train:
        fingerprint: <hex>
        cmd: python src/train.py
        deps: {src/train.py: <hex>, data/prepared: <hex>.dir}
        params: {params.yaml: {train.lr: 0.1}}
        outs: {models/model: <hex>.dir, metrics/train.json: <hex>}
        metrics: {metrics/train.json: {accuracy: 0.93}}

``outs`` holds every file the stage produced that mlcd tracks: declared outs, and the metrics
and plots files, so all of them can be checked and restored. Updates re-read the file under
an OS lock and replace only the stages that finished, then rename a complete temp file over
the old one: two runs at once, or a run killed mid-write, never leave half a file.

``mlcd.lock`` is committed, so a pull request can change it: every out path is checked by
``mlcd.layout.project_path`` when the file is parsed (relative, inside the project after
symlinks, not under ``.git/`` or ``.mlcd/``) and again before anything is restored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.errors import PipelineError
from mlcd.layout import project_path

LOCK_FILE = "mlcd.lock"
SCHEMA = 1


@dataclass(frozen=True)
class LockEntry:
    """What ``mlcd.lock`` records for one stage."""

    fingerprint: str
    cmd: str
    deps: Mapping[str, str | None] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    outs: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"fingerprint": self.fingerprint, "cmd": self.cmd}
        data["deps"] = dict(self.deps)
        if self.params:
            data["params"] = {file: dict(values) for file, values in self.params.items()}
        data["outs"] = dict(self.outs)
        if self.metrics:
            data["metrics"] = {file: dict(values) for file, values in self.metrics.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockEntry:
        return cls(
            fingerprint=str(data["fingerprint"]),
            cmd=str(data.get("cmd", "")),
            deps=dict(data.get("deps") or {}),
            params={str(k): dict(v or {}) for k, v in (data.get("params") or {}).items()},
            outs={str(k): str(v) for k, v in (data.get("outs") or {}).items()},
            metrics={str(k): dict(v or {}) for k, v in (data.get("metrics") or {}).items()},
        )


def _bad_lock(path: Path, problem: str) -> PipelineError:
    return PipelineError(
        f"{path} is not a valid lock file: {problem}",
        hint="resolve merge conflicts in it, or delete it: 'mlcd run' rebuilds it "
        "(unchanged stages are restored from the run cache, not re-run)",
    )


def parse_lock(text: str, path: Path = Path(LOCK_FILE)) -> dict[str, LockEntry]:
    """Parse the text of a lock file.

    Raises:
        PipelineError: not YAML, or not the lock schema.
    """
    import yaml

    from mlcd.yamlfile import load_limited

    try:
        data = load_limited(text, str(path))
    except yaml.YAMLError as exc:
        raise _bad_lock(path, f"invalid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise _bad_lock(path, "expected a mapping with 'schema' and 'stages'")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise _bad_lock(
            path, f"schema {data.get('schema')!r} is not {SCHEMA} (written by another mlcd?)"
        )
    entries = {}
    for name, entry in (data.get("stages") or {}).items():
        if not isinstance(entry, dict) or "fingerprint" not in entry:
            raise _bad_lock(path, f"stage '{name}' has no fingerprint")
        try:
            entries[str(name)] = LockEntry.from_dict(entry)
        except (TypeError, ValueError, AttributeError) as exc:
            raise _bad_lock(path, f"stage '{name}': {exc}") from exc
        check_paths(entries[str(name)], str(name), path)
    return entries


def check_paths(entry: LockEntry, stage: str, path: Path) -> None:
    """Refuse an entry whose outs or metrics files are not safe project paths.

    Raises:
        UnsafePath: the first unsafe path, named with the stage.
    """
    for out in entry.outs:
        project_path(path.parent, out, f"{path.name}: stage '{stage}': out")
    for metrics_file in entry.metrics:
        project_path(path.parent, metrics_file, f"{path.name}: stage '{stage}': metrics file")


def read_lock(root: Path) -> dict[str, LockEntry]:
    """The entries of ``ROOT/mlcd.lock`` (empty if there is none)."""
    from mlcd.yamlfile import MAX_DATA_BYTES, read_limited

    path = root / LOCK_FILE
    try:
        text = read_limited(path, MAX_DATA_BYTES, LOCK_FILE)
    except FileNotFoundError:
        return {}
    return parse_lock(text, path)


def render_lock(entries: Mapping[str, LockEntry]) -> str:
    """The YAML text of a lock file."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    document = {"schema": SCHEMA, "stages": {n: e.to_dict() for n, e in entries.items()}}
    return yaml.dump(document, Dumper=dumper, sort_keys=False, default_flow_style=False)


def write_atomic(path: Path, text: str) -> None:
    """Write a text file through a temp file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def update_lock(
    root: Path,
    updates: Mapping[str, LockEntry | None],
    order: Iterable[str],
    state_dir: Path,
    keep_only: Iterable[str] | None = None,
) -> dict[str, LockEntry]:
    """Merge ``updates`` into ``mlcd.lock`` (None removes a stage) and write it atomically.

    Args:
        root: the project root.
        updates: new entries by stage name.
        order: stage names in ``mlcd.yaml`` order (the lock follows it for readable diffs).
        state_dir: ``.mlcd/``, where the OS lock file lives.
        keep_only: if given, drop entries of stages not in it (stages removed from mlcd.yaml).

    Returns:
        The entries written.
    """
    from mlcd.pipeline.pathlock import exclusive

    with exclusive(state_dir / "locks" / "mlcd.lock.lock"):
        entries = read_lock(root)
        for name, entry in updates.items():
            if entry is None:
                entries.pop(name, None)
            else:
                entries[name] = entry
        if keep_only is not None:
            keep = set(keep_only)
            entries = {n: e for n, e in entries.items() if n in keep}
        position = {name: index for index, name in enumerate(order)}
        ordered = dict(sorted(entries.items(), key=lambda kv: position.get(kv[0], len(position))))
        write_atomic(root / LOCK_FILE, render_lock(ordered))
        return ordered
