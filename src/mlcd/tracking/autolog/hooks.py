"""Patching, and patching what is imported later.

``patch`` replaces a function or method by a wrapper and remembers the original so that
``unpatch_all`` restores it. ``watch`` installs a finder at the front of ``sys.meta_path``
that lets the normal finders find ``sklearn``, ``xgboost`` and ``lightgbm`` modules and runs a
callback once each has executed: ``mlcd.autolog()`` called before the user's imports (as the
stage's ``sitecustomize`` does) imports none of these heavy libraries itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: (owner, attribute, original) of every patch, oldest first.
_patched: list[tuple[Any, str, Any]] = []
_lock = threading.RLock()

MARK = "__mlcd_autolog__"


def patch(owner: Any, name: str, wrapped: Callable[..., Any]) -> None:
    """Set ``owner.name`` to ``wrapped`` (once: an attribute already patched is left alone)."""
    with _lock:
        current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
        if current is None or getattr(current, MARK, False):
            return
        setattr(wrapped, MARK, True)
        setattr(owner, name, wrapped)
        _patched.append((owner, name, current))


def unpatch_all() -> None:
    """Restore every patched attribute."""
    with _lock:
        for owner, name, original in reversed(_patched):
            setattr(owner, name, original)
        _patched.clear()


def patched_count() -> int:
    """How many attributes are patched now."""
    return len(_patched)


class _Loader:
    """The real loader, with a callback after the module has executed."""

    def __init__(self, loader: Any, after: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._after = after

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Tools that read __loader__ or __spec__.loader later (importlib.resources,
        # inspect.getsource) see the real loader.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder:
    """Finds nothing itself: wraps the loader the other finders return for watched modules."""

    def __init__(self, tops: frozenset[str], after: Callable[[ModuleType], None]) -> None:
        self.tops = tops
        self.after = after

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.partition(".")[0] not in self.tops:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            spec.loader = _Loader(loader, self.after)
        return spec

    def invalidate_caches(self) -> None:
        """Nothing cached here."""


_finder: _Finder | None = None


def watch(tops: frozenset[str], after: Callable[[ModuleType], None]) -> None:
    """Call ``after(module)`` whenever a module under one of ``tops`` finishes importing."""
    global _finder
    with _lock:
        if _finder is not None:
            _finder.tops, _finder.after = tops, after
            return
        _finder = _Finder(tops, after)
        sys.meta_path.insert(0, _finder)  # type: ignore[arg-type]


def unwatch() -> None:
    """Remove the finder."""
    global _finder
    with _lock:
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)  # type: ignore[arg-type]
        _finder = None
