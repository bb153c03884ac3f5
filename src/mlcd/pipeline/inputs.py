"""Inputs mlcd writes for a stage before judging it: ``from_log`` datasets, ``sources``
(SQL queries, URLs) and ``warm_start`` pointers.

Both end up as files among the stage's deps, so the run cache treats them like any other
input: a log with no new labels writes the same bytes (the stage restores from cache), a
champion that did not move writes the same pointer. ``warm_start`` also tells the stage where
the champion's package is (``MLCD_WARM_START``), and the package saved by the stage records
that version as its parent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import NotFound
from mlcd.pipeline.outputs import ensure_gitignored, in_git

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.pipeline.snapshot import Snapshot
    from mlcd.store import Store

#: environment of a warm-started stage
WARM_START_ENV = "MLCD_WARM_START"
WARM_START_MODEL_ENV = "MLCD_WARM_START_MODEL"
WARM_START_VERSION_ENV = "MLCD_WARM_START_VERSION"
WARM_START_DIGEST_ENV = "MLCD_WARM_START_DIGEST"


def has_inputs(snapshot: Snapshot, names: Iterable[str] | None = None) -> bool:
    """Whether any of the stages (all by default) declares an input mlcd writes."""
    stages = snapshot.stages if names is None else {n: snapshot.stages[n] for n in names}
    return any(spec.inputs for spec in stages.values())


def refresh_inputs(
    snapshot: Snapshot,
    store: Store,
    objects: ObjectStore,
    names: Iterable[str] | None = None,
    kinds: tuple[str, ...] = ("from_log", "warm_start", "sql", "url"),
) -> list[dict[str, Any]]:
    """Write every ``from_log`` dataset and ``warm_start`` pointer of the stages.

    ``kinds`` limits which inputs are written: ``mlcd status`` refreshes only the pointers
    (a ``from_log`` input records a training window, which only a run may do).
    Returns what was written, one dict per input (``changed`` says whether the file moved).
    """
    from mlcd.logdata.windows import materialize

    done: list[dict[str, Any]] = []
    seen: set[str] = set()
    stages = snapshot.stages if names is None else {n: snapshot.stages[n] for n in names}
    for spec in stages.values():
        for item in spec.inputs:
            key = json.dumps(item, sort_keys=True, default=str)
            if key in seen or item["kind"] not in kinds:
                continue
            seen.add(key)
            if item["kind"] == "from_log":
                from mlcd.config import FromLog

                result = materialize(
                    store,
                    objects,
                    snapshot.root,
                    FromLog.model_validate(item["spec"]),
                    label=str(item["label"]),
                    path=str(item["path"]),
                    replay_path=item.get("replay_path"),
                )
                done.append({"stage": spec.name, "kind": "from_log", **result.to_dict()})
                if in_git(snapshot.root):  # rebuilt from the store: never committed, like outs
                    written = [item["path"], item.get("replay_path")]
                    ensure_gitignored(snapshot.root, [str(p) for p in written if p])
            elif item["kind"] in ("sql", "url"):
                from mlcd.sources import materialize as fetch_source

                fetched = fetch_source(store, snapshot.root, item)
                done.append({"stage": spec.name, **fetched.to_dict()})
                if in_git(snapshot.root):  # re-read from the source: never committed
                    ensure_gitignored(snapshot.root, [str(item["path"])])
            else:
                done.append({"stage": spec.name, **write_pointer(snapshot.root, store, item)})
    return done


def write_pointer(root: Path, store: Store, item: Mapping[str, Any]) -> dict[str, Any]:
    """Write the version ``model@alias`` names now (or none yet) to the stage's pointer file."""
    from mlcd.registry import resolve

    ref = f"{item['model']}@{item['alias']}"
    try:
        version = resolve(store, ref)
        document = {
            "model": version.name,
            "alias": item["alias"],
            "version": version.version,
            "digest": version.digest,
        }
    except NotFound:
        document = {"model": item["model"], "alias": item["alias"], "version": None}
    target = root / str(item["pointer"])
    text = json.dumps(document, sort_keys=True, indent=1) + "\n"
    changed = not target.is_file() or target.read_text(encoding="utf-8") != text
    if changed:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp")
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, target)
    return {"kind": "warm_start", "path": str(item["pointer"]), "changed": changed, **document}


def warm_start_env(
    root: Path, objects: ObjectStore, inputs: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """The environment of a warm-started stage: the champion's package, fetched and verified.

    Empty values when the alias named no version yet (the first model trains from scratch).
    """
    from mlcd.registry import ModelVersion, fetch
    from mlcd.registry.context import default_cache_dir

    for item in inputs:
        if item.get("kind") != "warm_start":
            continue
        document = json.loads((root / str(item["pointer"])).read_text(encoding="utf-8"))
        if document.get("version") is None:
            return {
                WARM_START_ENV: "",
                WARM_START_MODEL_ENV: str(item["model"]),
                WARM_START_VERSION_ENV: "",
                WARM_START_DIGEST_ENV: "",
            }
        version = ModelVersion(
            name=str(document["model"]),
            version=int(document["version"]),
            digest=str(document["digest"]),
        )
        folder = fetch(objects, version, default_cache_dir())
        return {
            WARM_START_ENV: str(folder),
            WARM_START_MODEL_ENV: version.name,
            WARM_START_VERSION_ENV: str(version.version),
            WARM_START_DIGEST_ENV: version.digest,
        }
    return {}
