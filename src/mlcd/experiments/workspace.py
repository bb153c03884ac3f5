"""Workspace: a copy of the project where an experiment runs, so the work tree stays untouched.

The files are those git lists (tracked and untracked-but-not-ignored), or every file but
``.git/`` and ``.mlcd/`` outside git; plus tracked data (``PATH.mlcd`` pointers) and the
stages' deps that git ignores. Stage outputs are never copied: the run restores them from the
run cache, or makes them. Large files and data are hard-linked when the filesystem allows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlcd.layout import STATE_DIR

#: Files above this size are hard-linked rather than copied (when on the same filesystem).
LINK_ABOVE_BYTES = 1 << 20
POINTER_SUFFIX = ".mlcd"


def _git_files(root: Path) -> list[str] | None:
    """Files git lists below ``root`` (relative to it), or None outside a git work tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None
    return sorted({p for p in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if p})


def _walk(root: Path, relative: str = "") -> list[str]:
    """Every file (and symlink) below ``root/relative``, skipping ``.git/`` and ``.mlcd/``."""
    found = []
    start = root / relative if relative else root
    if start.is_file() or start.is_symlink():
        return [relative]
    for folder, dirs, files in os.walk(start):
        here = Path(folder).relative_to(root).as_posix()
        here = "" if here == "." else here
        dirs[:] = [d for d in dirs if not (here == "" and d in (STATE_DIR, ".git")) and d != ".git"]
        for name in files:
            found.append(f"{here}/{name}" if here else name)
        for name in dirs:
            if (Path(folder) / name).is_symlink():
                found.append(f"{here}/{name}" if here else name)
    return found


def source_files(inputs: Iterable[Any]) -> list[str]:
    """Project files that stage sources read by a relative URL (``sqlite:///warehouse.db``):
    the workspace needs them too, since mlcd resolves such URLs against the project root."""
    found = []
    prefix = "sqlite:///"
    for item in inputs:
        url = str(item.get("url") or "")
        if url.startswith(prefix):
            file = url[len(prefix) :].split("?")[0]
            if file and not file.startswith(":memory:") and _inside(file) and "${" not in file:
                found.append(file)
        elif url.startswith("file://") and _inside(url[len("file://") :]):
            found.append(url[len("file://") :])
    return found


def stage_paths(stages: Iterable[Any]) -> tuple[list[str], list[str]]:
    """(what the stages write, what they read) for :func:`build_workspace`: deps and the
    files their sources name by a relative URL."""
    stages = list(stages)
    produced = [p for spec in stages for p in spec.produced]
    deps = [d for spec in stages for d in spec.deps]
    deps += source_files(i for spec in stages for i in spec.inputs)
    return produced, deps


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _inside(relative: str) -> bool:
    return bool(relative) and not os.path.isabs(relative) and not relative.startswith("..")


def _place(source: Path, dest: Path, link: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        os.symlink(os.readlink(source), dest)
        return
    if link or source.stat().st_size > LINK_ABOVE_BYTES:
        try:
            os.link(source, dest)
            return
        except OSError:  # another filesystem, or links not allowed: copy instead
            pass
    shutil.copy2(source, dest)


def build_workspace(
    root: Path, dest: Path, produced: Iterable[str], deps: Iterable[str]
) -> list[str]:
    """Fill ``dest`` with the project's files; returns the relative paths placed.

    Args:
        root: the project root.
        dest: the empty workspace folder.
        produced: paths the stages write (never copied).
        deps: paths the stages read (copied even when git ignores them).
    """
    outputs = [p for p in produced if _inside(p)]
    listed = _git_files(root)
    files = set(listed if listed is not None else _walk(root))
    data: set[str] = set()
    for pointer in [f for f in files if f.endswith(POINTER_SUFFIX)]:
        target = pointer[: -len(POINTER_SUFFIX)]
        if (root / target).exists():
            data.update(_walk(root, target))
    for dep in deps:
        if _inside(dep) and not _under(dep, outputs) and (root / dep).exists():
            data.update(_walk(root, dep))
    placed = []
    for relative in sorted(files | data):
        if _under(relative, outputs) or _under(relative, (STATE_DIR, ".git")):
            continue
        source = root / relative
        if not (source.is_file() or source.is_symlink()):
            continue  # deleted from the work tree but still in git's index
        _place(source, dest / relative, link=relative in data)
        placed.append(relative)
    return placed
