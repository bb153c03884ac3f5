"""Every key of the mlcd.yaml schema is documented in docs/config.md (issue 19 item 6)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from mlcd.config import Config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def schema_keys() -> dict[str, set[str]]:
    """``{key: {models that declare it}}`` for every model reachable from ``Config``."""
    keys: dict[str, set[str]] = {}
    todo, seen = [Config], set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            keys.setdefault(field.alias or name, set()).add(model.__name__)
            todo.extend(_models(field.annotation))
    return keys


def test_every_config_key_is_documented() -> None:
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    spans = [span for line in lines for span in re.findall(r"`([^`]+)`", line)]
    documented = {word for span in spans for word in re.findall(r"\w+", span)}

    missing = {k: sorted(m) for k, m in schema_keys().items() if k not in documented}

    assert missing == {}
