"""Snapshot: the pipeline as declared (stages, params, lock), parsed once and cached.

Parsing ``mlcd.yaml`` goes through the pydantic schema, and YAML parsing is not free either;
together they cost more than everything else a no-op ``mlcd status`` does. So the parsed
stages, params files and lock entries are kept as JSON in ``.mlcd/pipeline.json``, each
under the stat signature of its source file, and re-parsed only when that file changed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mlcd.errors import ConfigError
from mlcd.layout import CONFIG_FILE, STATE_DIR
from mlcd.pipeline.dag import Dag
from mlcd.pipeline.lockfile import LOCK_FILE, LockEntry, parse_lock
from mlcd.pipeline.stage import StageSpec
from mlcd.pipeline.statcache import RACY_NS, signature
from mlcd.yamlfile import MAX_DATA_BYTES, read_limited

CACHE_FILE = "pipeline.json"
_CACHE_VERSION = (
    5  # 5: data contracts; 2: lock entries checked by project_path; 3: ${key} in cmd adds params;
)
# 4: from_log and warm_start inputs


@dataclass
class Snapshot:
    """Stages, parsed params files and lock entries of a project."""

    root: Path
    stages: dict[str, StageSpec]
    params: dict[str, Any]
    lock: dict[str, LockEntry]
    params_file: str = "params.yaml"

    @property
    def state_dir(self) -> Path:
        """``.mlcd/``."""
        return self.root / STATE_DIR

    @cached_property
    def dag(self) -> Dag:
        """The checked stage graph."""
        return Dag(self.stages)


def _sig_of(path: Path) -> list[int] | None:
    try:
        return list(signature(os.stat(path)))
    except FileNotFoundError:
        return None


def _fresh(entry: dict[str, Any] | None, sig: list[int] | None) -> bool:
    """Whether a cached parse still describes the file (and was not racy when taken)."""
    if entry is None or sig is None or entry.get("sig") != sig:
        return False
    return bool(sig[2] < entry.get("recorded_ns", 0) - RACY_NS)


def _json_safe(value: Any) -> bool:
    """True when ``value`` survives a JSON round trip unchanged (dates, int keys do not)."""
    try:
        return bool(json.loads(json.dumps(value)) == value)
    except (TypeError, ValueError):
        return False


def _parse_params(path: Path, relative: str) -> Any:
    import yaml

    from mlcd.yamlfile import load_file

    try:
        return load_file(path, relative) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{relative}:{mark.line + 1}" if mark is not None else relative
        raise ConfigError(
            f"{where}: invalid YAML in params file: {getattr(exc, 'problem', None) or exc}",
            hint="fix the syntax at that line",
        ) from exc


def _parse_stages(root: Path) -> tuple[dict[str, StageSpec], str]:
    from mlcd.config import load_config
    from mlcd.pipeline.stage import specs_from_config

    config = load_config(root)
    return specs_from_config(config, root), config.params_file


def load_snapshot(root: Path, use_cache: bool = True) -> Snapshot:
    """Load the pipeline of the project at ``root``, from the cache where files are unchanged.

    Raises:
        ConfigError: ``mlcd.yaml`` or a params file is invalid.
        PipelineError: ``mlcd.lock`` is invalid.
    """
    cache_path = root / STATE_DIR / CACHE_FILE
    cache: dict[str, Any] = {}
    if use_cache:
        try:
            loaded = json.loads(cache_path.read_bytes())
            if isinstance(loaded, dict) and loaded.get("v") == _CACHE_VERSION:
                cache = loaded
        except (OSError, ValueError):
            cache = {}
    files: dict[str, Any] = dict(cache.get("files", {}))
    changed = False
    now_ns = time.time_ns()

    # mlcd.yaml -> stages
    config_sig = _sig_of(root / CONFIG_FILE)
    entry = files.get(CONFIG_FILE)
    if _fresh(entry, config_sig):
        assert entry is not None
        stages = {name: StageSpec.from_dict(d) for name, d in entry["stages"].items()}
        params_file = str(entry.get("params_file", "params.yaml"))
    else:
        stages, params_file = _parse_stages(root)
        files[CONFIG_FILE] = {
            "sig": config_sig,
            "recorded_ns": now_ns,
            "stages": {name: spec.to_dict() for name, spec in stages.items()},
            "params_file": params_file,
        }
        changed = True

    # params files the stages read
    params: dict[str, Any] = {}
    for relative in sorted({ref.file for spec in stages.values() for ref in spec.params}):
        path = Path(relative) if os.path.isabs(relative) else root / relative
        sig = _sig_of(path)
        key = f"params:{relative}"
        entry = files.get(key)
        if sig is None:
            files.pop(key, None)
            continue
        if _fresh(entry, sig):
            assert entry is not None
            params[relative] = entry["data"]
            continue
        data = _parse_params(path, relative)
        params[relative] = data
        if _json_safe(data):
            files[key] = {"sig": sig, "recorded_ns": now_ns, "data": data}
            changed = True

    # mlcd.lock
    lock_path = root / LOCK_FILE
    lock_sig = _sig_of(lock_path)
    entry = files.get("lock")
    if lock_sig is None:
        lock: dict[str, LockEntry] = {}
    elif _fresh(entry, lock_sig):
        assert entry is not None
        lock = {name: LockEntry.from_dict(d) for name, d in entry["data"].items()}
    else:
        lock = parse_lock(read_limited(lock_path, MAX_DATA_BYTES, LOCK_FILE), lock_path)
        data = {name: e.to_dict() for name, e in lock.items()}
        if _json_safe(data):
            files["lock"] = {"sig": lock_sig, "recorded_ns": now_ns, "data": data}
            changed = True

    if changed and use_cache:
        _write_cache(cache_path, {"v": _CACHE_VERSION, "files": files})
    return Snapshot(root, stages, params, lock, params_file)


def _write_cache(path: Path, document: dict[str, Any]) -> None:
    """Best effort: the cache is an optimisation, a read-only state folder just skips it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only folder: there is nothing to clean up either
            pass
