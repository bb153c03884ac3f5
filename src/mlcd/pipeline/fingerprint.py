"""Fingerprint: the identity of a stage's inputs, the key of the run cache.

A fingerprint covers the command, the working folder, the digest of every dep, the values
of the declared params, the declared env, and the paths the stage writes (so a restored
entry lands in the right places). The stage's name is left out on purpose: the same step
under another name, on another branch or in a colleague's clone hits the same entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlcd.digest import hash_bytes
from mlcd.errors import ConfigError
from mlcd.params import flatten
from mlcd.pipeline.stage import StageSpec

FINGERPRINT_VERSION = 1
_MISSING = object()


def param_value(data: Any, key: str) -> Any:
    """The value at a dotted ``key`` (``train.lr``) of a parsed params file.

    A key may itself contain dots (``{"a.b": 1}``): the longest matching key wins.

    Raises:
        KeyError: the key is not there.
    """
    if isinstance(data, Mapping):
        if key in data:
            return data[key]
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            head = ".".join(parts[:cut])
            if head in data:
                found = _lookup(data[head], ".".join(parts[cut:]))
                if found is not _MISSING:
                    return found
    raise KeyError(key)


def _lookup(data: Any, key: str) -> Any:
    try:
        return param_value(data, key)
    except KeyError:
        return _MISSING


def stage_params(spec: StageSpec, params_data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{file: {dotted key: value}}`` for the params a stage declares, sections flattened.

    Args:
        spec: the stage.
        params_data: parsed params files by project-relative path (absent file: missing key).

    Raises:
        ConfigError: a declared key (or its file) does not exist.
    """
    values: dict[str, dict[str, Any]] = {}
    for ref in spec.params:
        if ref.file not in params_data:
            raise ConfigError(
                f"stage '{spec.name}' reads params from '{ref.file}', which does not exist",
                hint=f"create {ref.file} with the key '{ref.key}', or fix 'params:' of the stage",
            )
        try:
            value = param_value(params_data[ref.file], ref.key)
        except KeyError:
            named = f"${{{ref.key}}}" in spec.cmd.replace(" ", "")
            raise ConfigError(
                f"stage '{spec.name}' "
                + ("names ${" + ref.key + "} in its command" if named else "declares param")
                + f" '{ref.key}', but {ref.file} has no such key",
                hint=f"add '{ref.key}' to {ref.file}"
                + (
                    " (a shell variable is written $NAME or \\${NAME})"
                    if named
                    else " or remove it from the stage's params"
                ),
            ) from None
        # A whole section expands to its leaves, so mlcd.lock, status and diffs name the
        # exact key that changed ("train.lr"), not the section.
        leaves = (
            flatten(value, ref.key) if isinstance(value, Mapping) and value else {ref.key: value}
        )
        values.setdefault(ref.file, {}).update(leaves)
    return values


def canonical(value: Any) -> bytes:
    """Stable JSON bytes: sorted keys, no spaces, non-JSON values as their repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr).encode()


def stage_fingerprint(
    spec: StageSpec, deps: Mapping[str, str | None], params: Mapping[str, Mapping[str, Any]]
) -> str:
    """The hex fingerprint of a stage given its dep digests and param values."""
    document = {
        "v": FINGERPRINT_VERSION,
        "cmd": spec.cmd,
        "wdir": spec.wdir,
        "deps": dict(deps),
        "params": {file: dict(values) for file, values in params.items()},
        "env": dict(spec.env),
        "outs": [[o.path, o.cache] for o in spec.outs],
        "metrics": list(spec.metrics),
        "plots": list(spec.plots),
    }
    return hash_bytes(canonical(document)).hex
