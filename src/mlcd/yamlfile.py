"""Reading YAML that a user or a pull request wrote: bounded in bytes and in alias expansion.

A YAML file is small on disk but not necessarily small in memory: nine levels of anchors
(``&a [*a, *a, ...]``, the "billion laughs") stand for a billion nodes, and everything that
walks the document afterwards (the schema, the line map, ``config show``) pays for each one.
So every YAML document mlcd reads from a project (``mlcd.yaml``, params files, ``mlcd.lock``,
metrics files) goes through here: the text is refused above a size limit before it is parsed,
and the composed node graph is counted as if every alias were expanded (linear work: each
distinct node is counted once) and refused above a node limit before anything is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlcd.errors import ConfigError

#: ``mlcd.yaml``: a hand-written file; the largest real ones are a few tens of KiB.
MAX_CONFIG_BYTES = 1024 * 1024
#: params files, ``mlcd.lock``, metrics files: written by tools, still text a person reviews.
MAX_DATA_BYTES = 16 * 1024 * 1024
#: nodes a document may stand for once every alias is expanded.
MAX_NODES = 1_000_000


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def read_limited(path: str | os.PathLike[str], limit: int, source: str | None = None) -> str:
    """The text of ``path``, refused without reading it all when it is above ``limit`` bytes.

    Raises:
        ConfigError: the file is larger than ``limit`` (names the file and the limit).
        OSError: the file cannot be read (FileNotFoundError included), for the caller to word.
    """
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _too_big(source or str(path), limit)
    return data.decode("utf-8")


def _too_big(source: str, limit: int) -> ConfigError:
    return ConfigError(
        f"{source}: the file is larger than the {_mib(limit)} limit for this kind of file",
        hint="keep large data in tracked files ('mlcd data add'), not in YAML",
    )


def _expanded_size(root: Any, source: str, max_nodes: int) -> int:
    """Nodes the graph under ``root`` stands for with aliases expanded (each node counted once)."""
    import yaml

    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # iterative post-order walk: (node, children visited?)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            sizes[key] = 1
            continue
        if done:
            in_progress.discard(key)
            total = 1 + sum(sizes[id(child)] for child in children)
            sizes[key] = min(total, max_nodes + 1)
            continue
        if key in in_progress:
            raise ConfigError(
                f"{source}:{node.start_mark.line + 1}: an alias refers to the collection "
                "that contains it (a recursive YAML document)",
                hint="replace the recursive alias by the values it should stand for",
            )
        in_progress.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) not in sizes:
                if id(child) in in_progress:
                    raise ConfigError(
                        f"{source}:{child.start_mark.line + 1}: an alias refers to the "
                        "collection that contains it (a recursive YAML document)",
                        hint="replace the recursive alias by the values it should stand for",
                    )
                stack.append((child, False))
    return sizes[id(root)]


def compose_limited(
    text: str, source: str, limit: int = MAX_DATA_BYTES, max_nodes: int = MAX_NODES
) -> tuple[Any, Any]:
    """``(data, root node)`` of a YAML document, refused above the size and node limits.

    The root node (None for an empty document) carries the line of every key, for messages.

    Raises:
        ConfigError: the text is above ``limit`` characters, or its aliases expand to more than
            ``max_nodes`` nodes, or an alias is recursive.
        yaml.YAMLError: the text is not YAML (for the caller to word with its own hint).
    """
    import yaml

    if len(text) > limit:
        raise _too_big(source, limit)
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        size = _expanded_size(node, source, max_nodes)
        if size > max_nodes:
            raise ConfigError(
                f"{source}: its YAML aliases expand to more than {max_nodes:,} nodes, the "
                "limit (an alias bomb, or anchors used far more often than a project needs)",
                hint="write the values out, or share fewer levels of '&anchor' / '*alias'",
            )
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def load_limited(
    text: str, source: str, limit: int = MAX_DATA_BYTES, max_nodes: int = MAX_NODES
) -> Any:
    """The data of a YAML document, refused above the size and node limits (see ``compose_limited``)."""
    return compose_limited(text, source, limit, max_nodes)[0]


def load_file(path: Path, source: str, limit: int = MAX_DATA_BYTES) -> Any:
    """Read and parse a YAML file within the limits; raises like ``read_limited`` and ``load_limited``."""
    return load_limited(read_limited(path, limit, source), source, limit)
