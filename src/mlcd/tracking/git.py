"""The few git questions tracking asks: the current commit, and a file at a revision."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mlcd.errors import TrackingError


@dataclass(frozen=True)
class GitState:
    """The commit a run's code came from, and whether tracked files had local changes."""

    commit: str | None
    dirty: bool | None
    branch: str | None = None


def _git(root: str | os.PathLike[str], *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except FileNotFoundError as exc:
        raise TrackingError(
            "git is not installed", hint="install git to compare against revisions"
        ) from exc


def git_state(root: str | os.PathLike[str]) -> GitState:
    """The HEAD commit, dirty flag and branch of the repository at ``root`` (None outside git)."""
    try:
        head = _git(root, "rev-parse", "HEAD")
    except TrackingError:
        return GitState(None, None)
    if head.returncode != 0:
        return GitState(None, None)
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    branch = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    return GitState(
        commit=head.stdout.strip(),
        dirty=bool(status.stdout.strip()) if status.returncode == 0 else None,
        branch=branch.stdout.strip() or None if branch.returncode == 0 else None,
    )


#: How long a process reuses what it read of a repository's state, in seconds.
STATE_TTL = 10.0
_state_cache: dict[str, tuple[float, GitState]] = {}


def cached_git_state(root: str | os.PathLike[str]) -> GitState:
    """``git_state``, read at most every ``STATE_TTL`` seconds per repository: a sweep that
    starts thousands of runs does not start three git processes for each."""
    key = str(Path(root).absolute())
    now = time.monotonic()
    cached = _state_cache.get(key)
    if cached is not None and now - cached[0] < STATE_TTL:
        return cached[1]
    state = git_state(root)
    _state_cache[key] = (now, state)
    return state


def is_repository(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is inside a git work tree (False if git is missing)."""
    try:
        return _git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true"
    except TrackingError:
        return False


def resolve_revision(root: str | os.PathLike[str], rev: str) -> str | None:
    """The full commit id ``rev`` names in the repository at ``root``, or None."""
    if not rev or rev.startswith("-"):
        return None
    result = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return result.stdout.strip() if result.returncode == 0 else None


def show_file(root: str | os.PathLike[str], commit: str, relative: str) -> str | None:
    """The text of ``relative`` (to ``root``) at ``commit``, or None if it did not exist there."""
    path = "./" + Path(relative).as_posix()
    result = _git(root, "show", f"{commit}:{path}")
    return result.stdout if result.returncode == 0 else None
