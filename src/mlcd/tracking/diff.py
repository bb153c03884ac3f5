"""``mlcd diff``: how params and metrics changed between the workspace, git revisions and runs.

A side is a *snapshot*: flat params (``train.lr``; keys of a params file other than the
default one as ``file:key``, as the pipeline logs them) and flat metrics (``accuracy``,
``val.loss``). The workspace is the ``mlcd.lock`` on disk, overridden by the params and
metrics files as they are now; a git revision is ``git show REV:mlcd.lock``; a run is its
params and latest metrics in the store.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from mlcd.errors import NotFound, UsageError
from mlcd.params import flatten
from mlcd.tracking.git import is_repository, resolve_revision, show_file
from mlcd.yamlfile import load_limited

LOCK_FILE = "mlcd.lock"
WORKSPACE = "workspace"


@dataclass(frozen=True)
class Snapshot:
    """Params and metrics of one side of a diff."""

    label: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiffRow:
    """One param or metric that differs (or not, with ``--all``)."""

    kind: str  # param | metric
    key: str
    old: Any
    new: Any

    @property
    def status(self) -> str:
        """``added``, ``removed``, ``changed`` or ``same``."""
        if self.old is None and self.new is not None:
            return "added"
        if self.new is None and self.old is not None:
            return "removed"
        return "same" if _same(self.old, self.new) else "changed"

    @property
    def change(self) -> float | None:
        """``new - old`` when both are numbers."""
        old, new = _number(self.old), _number(self.new)
        return None if old is None or new is None else new - old

    @property
    def relative(self) -> float | None:
        """``(new - old) / |old|`` when both are numbers and ``old`` is not 0."""
        old, change = _number(self.old), self.change
        return None if old is None or change is None or old == 0 else change / abs(old)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "key": self.key,
            "old": self.old,
            "new": self.new,
            "change": self.change,
            "relative": self.relative,
            "status": self.status,
        }


@dataclass(frozen=True)
class Diff:
    """The rows that changed from ``old`` to ``new``."""

    old: Snapshot
    new: Snapshot
    rows: tuple[DiffRow, ...]

    @property
    def changed(self) -> bool:
        """Whether any param or metric differs."""
        return any(r.status != "same" for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "old": self.old.label,
            "new": self.new.label,
            "notes": [*self.old.notes, *self.new.notes],
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_markdown(self) -> str:
        """Markdown tables for a pull-request comment (params first, then metrics)."""
        lines = [f"### mlcd diff: `{self.old.label}` → `{self.new.label}`", ""]
        for note in (*self.old.notes, *self.new.notes):
            lines.append(f"> {note}")
        if lines[-1] != "":
            lines.append("")
        for kind, title in (("param", "Params"), ("metric", "Metrics")):
            rows = [r for r in self.rows if r.kind == kind]
            if not rows:
                continue
            lines += [f"**{title}**", "", "| key | old | new | change |", "|---|---:|---:|---:|"]
            for row in rows:
                lines.append(
                    f"| {_md(row.key)} | {_md(format_cell(row.old))} | "
                    f"{_md(format_cell(row.new))} | {format_change(row)} |"
                )
            lines.append("")
        if not self.rows:
            lines.append("No param or metric changed.")
        return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _same(old: Any, new: Any) -> bool:
    a, b = _number(old), _number(new)
    if a is not None and b is not None:
        return a == b
    return str(old) == str(new)


def format_cell(value: Any) -> str:
    """A value for a diff table: numbers to 6 significant digits, missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_change(row: DiffRow) -> str:
    """``+0.012 (+1.3%)`` for numbers, the status otherwise.

    The change keeps 3 significant digits; the percentage one decimal from 1% up, and below
    that 2 significant digits, so a small non-zero change never reads ``+0.0%``.
    """
    if row.change is None:
        return "" if row.status in ("same", "changed") else row.status
    text = f"{row.change:+.3g}"
    if row.relative is not None:
        percent = row.relative * 100
        shown = f"{percent:+.1f}" if abs(percent) >= 1 or percent == 0 else f"{percent:+.2g}"
        text += f" ({shown}%)"
    return text


def compare_snapshots(old: Snapshot, new: Snapshot, include_same: bool = False) -> Diff:
    """Rows for every param and metric whose value differs (all of them with ``include_same``)."""
    rows: list[DiffRow] = []
    for kind, a, b in (("param", old.params, new.params), ("metric", old.metrics, new.metrics)):
        for key in sorted(set(a) | set(b)):
            row = DiffRow(kind, key, a.get(key), b.get(key))
            if include_same or row.status != "same":
                rows.append(row)
    return Diff(old, new, tuple(rows))


# ---------------------------------------------------------------------- lock files


def _numeric(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _param_key(file: str, key: str, default_file: str) -> str:
    return key if file == default_file else f"{file}:{key}"


def parse_lock_values(
    text: str, source: str, default_params_file: str = "params.yaml"
) -> tuple[dict[str, Any], dict[str, float]]:
    """Flat params and metrics recorded in the text of an ``mlcd.lock``.

    Raises:
        UsageError: the text is not a valid lock file.
    """
    try:
        data = load_limited(text, source) or {}
    except yaml.YAMLError as exc:
        raise UsageError(
            f"{source} is not valid YAML: {getattr(exc, 'problem', None) or exc}",
            hint="fix or regenerate it with 'mlcd run'",
        ) from exc
    stages = data.get("stages") if isinstance(data, Mapping) else None
    if not isinstance(stages, Mapping):
        raise UsageError(f"{source} has no 'stages' mapping", hint="regenerate it with 'mlcd run'")
    params: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for entry in stages.values():
        if not isinstance(entry, Mapping):
            continue
        for file, values in (entry.get("params") or {}).items():
            for key, value in flatten(values or {}).items():
                params[_param_key(str(file), key, default_params_file)] = value
        for values in (entry.get("metrics") or {}).values():
            metrics.update(_numeric(flatten(values or {})))
    return params, metrics


# ---------------------------------------------------------------------- the sides
def revision_snapshot(
    root: Path, rev: str, commit: str, default_params_file: str = "params.yaml"
) -> Snapshot:
    """Params and metrics of ``mlcd.lock`` at a git commit (empty, with a note, if it had none).

    Raises:
        UsageError: the lock at that commit is not valid.
    """
    label = rev if rev.startswith(commit[:7]) else f"{rev} ({commit[:8]})"
    text = show_file(root, commit, LOCK_FILE)
    if text is None:
        return Snapshot(label, notes=(f"{rev} has no {LOCK_FILE}: nothing was recorded there",))
    params, metrics = parse_lock_values(text, f"{LOCK_FILE} at {rev}", default_params_file)
    return Snapshot(label, params, metrics)


def workspace_snapshot(root: Path, config: Any) -> Snapshot:
    """The workspace: ``mlcd.lock`` on disk, overridden by the params and metrics files now.

    Args:
        root: the project root.
        config: the loaded ``mlcd.config.Config`` (its stages say which files to read).
    """
    params: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    notes: list[str] = []
    default_file = config.params_file
    lock = root / LOCK_FILE
    if lock.is_file():
        params, metrics = parse_lock_values(
            lock.read_text(encoding="utf-8"), LOCK_FILE, default_file
        )
    documents: dict[str, Any] = {}

    def document(relative: str) -> Any:
        if relative not in documents:
            documents[relative] = _read_document(root / relative, notes)
        return documents[relative]

    for stage in config.stages.values():
        for file, key in _declared_params(stage, default_file):
            data = document(file)
            if data is None:
                continue
            value = _lookup(data, key)
            if value is _MISSING:
                continue
            for flat_key, flat_value in (
                flatten(value, key) if isinstance(value, Mapping) else {key: value}
            ).items():
                params[_param_key(file, flat_key, default_file)] = flat_value
        for metrics_file in stage.metrics:
            data = document(_join(stage.wdir, metrics_file))
            if data is not None:
                metrics.update(_numeric(flatten(data)))
    return Snapshot(WORKSPACE, params, metrics, tuple(notes))


def _join(wdir: str, path: str) -> str:
    return os.path.normpath(PurePosixPath(wdir, path).as_posix()).replace(os.sep, "/")


def _declared_params(stage: Any, default_file: str) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []
    for item in stage.params:
        if isinstance(item, str):
            refs.append((default_file, item))
        else:
            for file, keys in item.items():
                refs.extend((_join(stage.wdir, file), key) for key in keys)
    return refs


_MISSING = object()


def _lookup(data: Any, dotted: str) -> Any:
    if isinstance(data, Mapping) and dotted in data:
        return data[dotted]
    node = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _read_document(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return load_limited(text, path.name)
    except (ValueError, yaml.YAMLError):
        notes.append(f"{path.name} could not be parsed; its last recorded values are shown")
        return None


def run_snapshot(conn: Any, ref: str) -> Snapshot:
    """The params and latest metrics of a run (id, id prefix or name).

    Raises:
        NotFound: no such run.
    """
    from mlcd.tracking.query import get

    record = get(conn, ref)
    label = f"run {record.id[:8]}" + (f" ({record.name})" if record.name else "")
    params = {key: _param_value(value) for key, value in record.params.items()}
    return Snapshot(label, params, dict(record.metrics))


def _param_value(text: str | None) -> Any:
    """A stored param (text) as the number it spells, if it does: ``"0.1"`` -> ``0.1``."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    number = _number(text)
    return text if number is None else number


def resolve_side(
    ref: str | None,
    root: Path,
    config: Any,
    read: Callable[[], Any],
) -> Snapshot:
    """A snapshot for what the user typed: ``workspace``, a git revision, or a run.

    A ref is tried as a git revision first, then as a run; ``run:REF`` and ``rev:REF`` force
    one reading.

    Args:
        ref: ``None``/``workspace``, ``HEAD``, ``main~2``, a commit, ``run:ID``, a run id/name.
        root: the project root.
        config: the loaded project configuration.
        read: a context manager factory giving a store connection (``store.read``).

    Raises:
        UsageError: neither a revision nor a run.
    """
    if ref is None or ref == WORKSPACE:
        return workspace_snapshot(root, config)
    default_file = config.params_file
    if ref.startswith("rev:"):
        rev = ref.removeprefix("rev:")
        commit = resolve_revision(root, rev)
        if commit is None:
            raise UsageError(f"'{rev}' is not a git revision here", hint="check 'git log'")
        return revision_snapshot(root, rev, commit, default_file)
    if not ref.startswith("run:"):
        commit = resolve_revision(root, ref)
        if commit is not None:
            return revision_snapshot(root, ref, commit, default_file)
    run_ref = ref.removeprefix("run:")
    try:
        with read() as conn:
            return run_snapshot(conn, run_ref)
    except NotFound:
        if not ref.startswith("run:") and not is_repository(root):
            raise UsageError(
                f"'{ref}' is not a run, and {root} is not in a git repository",
                hint="run 'git init' and commit mlcd.lock to compare revisions, or compare "
                "runs: mlcd diff RUN --against RUN",
            ) from None
        raise UsageError(
            f"'{ref}' is neither a git revision nor a run",
            hint="give a commit, branch or tag (e.g. HEAD~1), or a run id/name from 'mlcd runs list'",
        ) from None
