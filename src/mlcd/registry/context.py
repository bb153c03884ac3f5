"""The project a bare ``load_model("name@alias")`` talks to, opened once per process.

Inside a stage of ``mlcd run`` it is ``MLCD_PROJECT``; elsewhere, the project around the
working folder. ``MLCD_STORE`` / ``MLCD_ARTIFACTS`` override its configuration as usual.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mlcd.objects import ObjectStore
from mlcd.store import Store

_contexts: dict[tuple[str, str], tuple[Store, ObjectStore, Path]] = {}
_contexts_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``MLCD_MODEL_CACHE``, else ``$XDG_CACHE_HOME/mlcd/models`` (``~/.cache/...``)."""
    if os.environ.get("MLCD_MODEL_CACHE"):
        return Path(os.environ["MLCD_MODEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlcd" / "models"


def project_context(start: str | os.PathLike[str] | None = None) -> tuple[Store, ObjectStore, Path]:
    """The store, object store and model cache of the project around ``start`` (or the
    stage's ``MLCD_PROJECT``, or the working folder); opened once per process.

    Raises:
        ConfigError: no project found.
    """
    from mlcd.config import load_config
    from mlcd.layout import STATE_DIR, find_root
    from mlcd.objects import open_object_store

    root = find_root(start or os.environ.get("MLCD_PROJECT") or ".")
    config = load_config(root)
    key = (str(root), f"{config.store}|{config.artifacts}")
    with _contexts_lock:
        if key not in _contexts:
            store = Store(config.store, root=root)
            objects = open_object_store(config.artifacts, root=root)
            cache = (
                Path(os.environ["MLCD_MODEL_CACHE"])
                if os.environ.get("MLCD_MODEL_CACHE")
                else root / STATE_DIR / "cache" / "models"
            )
            _contexts[key] = (store, objects, cache)
        return _contexts[key]


def clear_contexts() -> None:
    """Dispose of the stores opened by :func:`project_context` (tests, long-lived hosts)."""
    with _contexts_lock:
        for store, _objects, _cache in _contexts.values():
            store.dispose()
        _contexts.clear()
