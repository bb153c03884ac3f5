"""Outputs: storing what a stage wrote, restoring it from the object store, reading metrics."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest
from mlcd.errors import ObjectError, PipelineError
from mlcd.layout import project_path
from mlcd.pipeline.fingerprint import flatten
from mlcd.pipeline.stage import StageSpec
from mlcd.pipeline.statcache import StatCache

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore


def numeric_metrics(data: Any) -> dict[str, float]:
    """The finite numbers of a metrics document, flattened (booleans and text left out)."""
    values = {}
    for key, value in flatten(data).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            values[key] = value
    return values


def read_metrics(path: Path) -> dict[str, float]:
    """Parse a JSON or YAML metrics file into flat numeric values.

    Raises:
        PipelineError: the file is not valid JSON/YAML.
    """
    import yaml

    from mlcd.yamlfile import MAX_DATA_BYTES, load_limited, read_limited

    text = read_limited(path, MAX_DATA_BYTES, str(path))
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            data = load_limited(text, str(path)) or {}
    except (ValueError, yaml.YAMLError) as exc:
        raise PipelineError(
            f"metrics file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}",
            hint="write metrics as a JSON (or YAML) mapping of names to numbers",
        ) from exc
    return numeric_metrics(data)


def remove_outputs(root: Path, spec: StageSpec) -> None:
    """Delete what the stage will write again (outs marked ``persist`` are kept)."""
    persist = {o.path for o in spec.outs if o.persist}
    for relative in spec.produced:
        if relative in persist:
            continue
        path = root / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def store_outputs(
    objects: ObjectStore,
    statcache: StatCache,
    root: Path,
    produced: Mapping[str, str],
    skip: Iterable[str] = (),
) -> None:
    """Put every produced path (but ``skip``: uncached outs) into the object store.

    Raises:
        PipelineError: a file changed between hashing and storing (something else writes it).
    """
    skipped = set(skip)
    for relative, expected in produced.items():
        if relative in skipped:
            continue
        path = root / relative
        if expected.endswith(".dir"):
            known = {rel: Digest(hex_) for rel, hex_, _ in statcache.dir_entries(path)}
            stored = objects.put_dir(path, known=known)
        else:
            stored = objects.put_file(path, Digest(expected))
        if str(stored) != expected:
            raise PipelineError(
                f"'{relative}' changed while it was being stored",
                hint="is another process writing to it? stop it and run again",
            )


def restorable(objects: ObjectStore, outputs: Mapping[str, str]) -> bool:
    """Whether every object (and every file of every folder) of ``outputs`` is stored."""
    for digest_text in outputs.values():
        digest = Digest.parse(digest_text)
        if not objects.has(digest):
            return False
        if digest.is_dir:
            try:
                entries = objects.read_manifest(digest)
            except ObjectError:
                return False
            if any(not objects.has(e.digest) for e in entries):
                return False
    return True


def restore_outputs(
    objects: ObjectStore,
    statcache: StatCache,
    root: Path,
    outputs: Mapping[str, str],
    current: Mapping[str, str | None],
) -> list[str]:
    """Write each output whose current digest differs; returns the paths restored.

    Every path is checked first (``mlcd.layout.project_path``: inside the project after
    symlinks, not under ``.git/`` or ``.mlcd/``), so one unsafe path writes nothing at all.
    Every restored file is verified against its digest on the way out of the store and
    recorded in the stat cache, so it is not read again to be hashed.

    Raises:
        UnsafePath: a path that is not safe to write.
    """
    todo = {
        relative: digest_text
        for relative, digest_text in outputs.items()
        if current.get(relative) != digest_text
    }
    for relative in todo:
        project_path(root, relative, "output")
    restored = []
    for relative, digest_text in todo.items():
        digest = Digest.parse(digest_text)
        dest = project_path(root, relative, "output")  # again: an earlier output may be a link
        if dest.is_symlink():
            dest.unlink()
        elif dest.is_dir() and not digest.is_dir:
            shutil.rmtree(dest)
        elif dest.is_file() and digest.is_dir:
            dest.unlink()
        objects.get_file(digest, dest)
        if digest.is_dir:
            for entry in objects.read_manifest(digest):
                statcache.record(os.path.join(dest, entry.path), entry.digest.hex)
        else:
            statcache.record(dest, digest.hex)
        restored.append(relative)
    return restored


def in_git(root: Path) -> bool:
    """Whether the project sits in a git work tree."""
    return any((folder / ".git").exists() for folder in (root, *root.parents))


def ensure_gitignored(root: Path, paths: list[str]) -> None:
    """Add each path to the ``.gitignore`` of its folder (outs live in the object store)."""
    for relative in paths:
        path = root / relative
        ignore = path.parent / ".gitignore"
        line = f"/{path.name}"
        try:
            text = ignore.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        if line in text.splitlines():
            continue
        prefix = "\n" if text and not text.endswith("\n") else ""
        with open(ignore, "a", encoding="utf-8") as handle:
            handle.write(f"{prefix}{line}\n")
