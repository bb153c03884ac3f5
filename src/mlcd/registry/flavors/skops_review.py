"""What a skops file may hold without explicit trust: an allow-list of types, and no code.

Two checks, both before anything in the file is imported or built:

1. skops' own review (``skops.io.get_untrusted_types``). Its defaults are an allow-list
   already: scikit-learn's public estimators (``sklearn.utils.all_estimators``), a few of
   scikit-learn's loss and binning internals, numpy and scipy ufuncs, numpy scalar types,
   bit generators and sparse matrices. mlcd accepts what skops flags only when the type is
   in ``EXTRA_TYPES``: fitted trees, ``make_column_selector`` and numpy's ``dtype``.
2. mlcd's own walk over the file's ``schema.json``, which refuses whatever would turn into
   a callable: functions other than numpy/scipy ufuncs and ``PURE_FUNCTIONS``,
   ``functools.partial`` (unless around one of ``PURE_FUNCTIONS``), bound methods,
   ``operator`` callers, and types other than numpy scalar and builtin primitive types; and
   anything from a testing module. This holds even if a future skops trusts more.

Never a whole namespace: ``sklearn.utils._testing``, ``numpy.testing`` and ``scipy``'s
private modules hold functions that run code, and scipy distributions ``exec`` a template
from their state when they are rebuilt.
"""

from __future__ import annotations

import functools
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlcd.errors import UnsafeModel

#: Types mlcd accepts beyond skops' defaults. Each is data that scikit-learn reads, never
#: calls. The fitted trees' node arrays are trusted as data: a crafted index can crash the
#: process at prediction time (denial of service), it cannot run code.
EXTRA_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",  # DecisionTree*, RandomForest*, ExtraTrees*, GradientBoosting*
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # HistGradientBoosting*
        "sklearn.compose._column_transformer.make_column_selector",  # columns by dtype or regex
        "numpy.dtype",  # rebuilt from an array's dtype, never imported by name
    }
)

#: Functions scikit-learn's own estimators store (HistGradientBoosting's categorical
#: preprocessor holds ``partial(check_array, ...)``): they validate arrays and call nothing
#: they are given. Accepted as functions and as the target of a ``functools.partial`` only.
PURE_FUNCTIONS = frozenset({"sklearn.utils.validation.check_array"})
_ACCEPTED_KIND = {
    "functools.partial": "PartialNode",
    **dict.fromkeys(PURE_FUNCTIONS, "FunctionNode"),
}

#: skops node kinds that load as callables; refused unless trusted (ufuncs and scalar types
#: aside, see ``_callable_refusal``).
_CALLABLE_KINDS = {
    "FunctionNode": "a function",
    "PartialNode": "functools.partial",
    "MethodNode": "a bound method",
    "OperatorFuncNode": "an operator caller",
    "TypeNode": "a class used as a value",
}
_TESTING_SEGMENTS = ("testing", "tests", "conftest")
_SCHEMA = "schema.json"
_MAX_SCHEMA_BYTES = 256 * 1024 * 1024


def review(path: Path) -> list[str]:
    """The types in the skops file at ``path`` that need trust, each with why; empty if none.

    Raises:
        UnsafeModel: the file is not a readable skops archive.
    """
    import skops.io as sio

    refused: dict[str, str] = {}
    for name, kind, node in _nodes(path):
        reason = _callable_refusal(name, kind, node) or _testing_refusal(name)
        if reason:
            refused.setdefault(name, reason)
    try:
        flagged = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises plain errors on malformed files
        raise _unreadable(path, exc) from exc
    for name in flagged:
        # skops flags every partial and function; the walk above vetted each of those nodes.
        if name not in EXTRA_TYPES and name not in _ACCEPTED_KIND:
            refused.setdefault(name, "not on the allow-list")
    return [f"{name} ({why})" for name, why in sorted(refused.items())]


def _callable_refusal(name: str, kind: str, node: dict[str, Any]) -> str | None:
    accepted = _ACCEPTED_KIND.get(name)
    if accepted is not None and kind != accepted:
        return f"{name} loaded as a {kind}, not as itself"
    what = _CALLABLE_KINDS.get(kind)
    if what is None:
        return None
    if kind == "FunctionNode" and (_is_ufunc(name) or name in PURE_FUNCTIONS):
        return None
    if kind == "PartialNode":
        content = node.get("content")
        func = content.get("func") if isinstance(content, dict) else None
        if isinstance(func, dict) and func.get("__loader__") == "FunctionNode":
            target = _name_of(func)
            if target in PURE_FUNCTIONS:
                return None
        return f"{what} of something other than a vetted function: code, not data"
    if kind == "TypeNode" and name in _value_types():
        return None
    return f"{what}: code, not data"


def _testing_refusal(name: str) -> str | None:
    for segment in name.split("."):
        if segment.lstrip("_") in _TESTING_SEGMENTS or segment.startswith("_test"):
            return "from a testing module"
    return None


def _nodes(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(module.name, node kind, node)`` for every node of the file's schema."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(_SCHEMA)
            if info.file_size > _MAX_SCHEMA_BYTES:
                raise UnsafeModel(
                    f"{path.name}: its {_SCHEMA} is {info.file_size} bytes, over the "
                    f"{_MAX_SCHEMA_BYTES} bytes mlcd reads",
                    hint="this file was crafted or corrupted; do not load it",
                )
            schema = json.loads(archive.read(info))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError, RecursionError) as exc:
        raise _unreadable(path, exc) from exc
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("__loader__")
            if isinstance(kind, str):
                yield _name_of(item), kind, item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _name_of(node: dict[str, Any]) -> str:
    name = f"{node.get('__module__')}.{node.get('__class__')}"
    content = node.get("content")
    if node.get("__loader__") == "MethodNode" and isinstance(content, dict):
        name += f".{content.get('func')}"
    return name


def _unreadable(path: Path, exc: BaseException) -> UnsafeModel:
    return UnsafeModel(
        f"{path.name} is not a readable skops file: {exc}",
        hint="save the model again with mlcd.save_model",
    )


def _is_ufunc(name: str) -> bool:
    """Whether ``name`` (as skops records it) is a public numpy or scipy.special ufunc."""
    import numpy as np
    import scipy.special

    module_name, _, attr = name.rpartition(".")
    if module_name != "numpy" and not module_name.startswith("scipy.special"):
        return False
    module = sys.modules.get(module_name)  # never import a module a file names
    value = getattr(module, attr, None) if module is not None and not attr.startswith("_") else None
    return isinstance(value, np.ufunc) and any(
        getattr(public, attr, None) is value for public in (np, scipy.special)
    )


@functools.cache
def _value_types() -> frozenset[str]:
    """Types a model may hold as values (``dtype=np.float32``): primitives, numpy scalars."""
    import numpy as np

    names = {f"builtins.{t.__name__}" for t in (int, float, complex, str, bool, bytes)}
    for attr in dir(np):
        value = getattr(np, attr, None)
        if isinstance(value, type) and issubclass(value, np.generic):
            names.add(f"numpy.{value.__name__}")
    return frozenset(names)
