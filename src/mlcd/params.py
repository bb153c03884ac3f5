"""Params and metrics documents as flat dotted keys, shared by pipelines and tracking.

Kept apart from ``mlcd.config`` so that the no-op pipeline path, which uses it, does not
import pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    if not isinstance(data, Mapping):
        return {prefix: data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat
