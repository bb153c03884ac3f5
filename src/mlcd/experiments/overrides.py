"""Override: one ``-S [FILE:]KEY=VALUE`` of ``mlcd exp run``, parsed and written to a params file."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd.errors import UsageError
from mlcd.layout import project_path


@dataclass(frozen=True)
class Override:
    """A params file, a dotted key in it and the new value (a parsed YAML scalar)."""

    file: str
    key: str
    value: Any

    def label(self, default_file: str) -> str:
        """The key as runs show params: ``train.lr``, or ``other.yaml:a.b`` for another file."""
        return self.key if self.file == default_file else f"{self.file}:{self.key}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "key": self.key, "value": self.value}


def _parse_value(raw: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, Mapping | list) else value


def parse_override(text: str, default_file: str) -> Override:
    """Parse ``[FILE:]KEY=VALUE``.

    Raises:
        UsageError: no ``=``, or an empty key or key part.
    """
    left, equals, raw = text.partition("=")
    if not equals:
        raise UsageError(
            f"-S {text!r}: expected [FILE:]KEY=VALUE", hint="for example: -S train.lr=0.1"
        )
    file, colon, key = left.partition(":")
    if not colon:
        file, key = default_file, left
    key = key.strip()
    if not file.strip() or not key or any(not part for part in key.split(".")):
        raise UsageError(
            f"-S {text!r}: the key is empty or has an empty part",
            hint="for example: -S train.lr=0.1 or -S other.yaml:model.depth=3",
        )
    return Override(file.strip(), key, _parse_value(raw))


def parse_overrides(texts: Iterable[str], default_file: str) -> list[Override]:
    """Parse every ``-S``; a later one for the same file and key wins.

    Raises:
        UsageError: a malformed override (nothing is written).
    """
    parsed: dict[tuple[str, str], Override] = {}
    for text in texts:
        item = parse_override(text, default_file)
        parsed[(item.file, item.key)] = item
    return list(parsed.values())


def _set(document: dict[str, Any], override: Override) -> None:
    *parents, last = override.key.split(".")
    node = document
    for index, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: index + 1])
            raise UsageError(
                f"-S {override.file}:{override.key}: '{where}' is a value, not a mapping",
                hint="override the value itself, or a key of a mapping",
            )
        node = child
    node[last] = override.value


def write_overrides(root: Path, overrides: Iterable[Override]) -> dict[str, str]:
    """Apply the overrides to the params files below ``root``; returns each file's new text.

    Raises:
        UsageError: a key whose parent is not a mapping, or a file that is not a mapping.
        UnsafePath: a file outside ``root``.
    """
    import yaml

    from mlcd.yamlfile import MAX_DATA_BYTES, load_limited, read_limited

    by_file: dict[str, list[Override]] = {}
    for item in overrides:
        by_file.setdefault(item.file, []).append(item)
    texts: dict[str, str] = {}
    for file, items in by_file.items():
        path = project_path(root, file, "params file")
        text = read_limited(path, MAX_DATA_BYTES, file) if path.exists() else ""
        is_json = path.suffix.lower() == ".json"
        document = (json.loads(text) if is_json else load_limited(text, file)) if text else {}
        document = document or {}
        if not isinstance(document, dict):
            raise UsageError(f"params file {file} is not a mapping; cannot override keys in it")
        for item in items:
            _set(document, item)
        if is_json:
            texts[file] = json.dumps(document, indent=2) + "\n"
        else:
            texts[file] = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[file], encoding="utf-8")
    return texts
