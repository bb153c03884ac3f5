"""Where a project's files are: ``mlcd.yaml``, the ``.mlcd/`` state folder, the project root.

Free of heavy imports (no pydantic, no YAML), so the fast paths (`mlcd status`, a no-op
`mlcd run`) can find the project without loading the configuration schema.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlcd.errors import ConfigError

CONFIG_FILE = "mlcd.yaml"
STATE_DIR = ".mlcd"


def find_root(start: str | os.PathLike[str] = ".") -> Path:
    """The nearest folder at or above ``start`` holding an ``mlcd.yaml``.

    Raises:
        ConfigError: none found.
    """
    here = Path(start).absolute()
    for folder in (here, *here.parents):
        if os.path.isfile(folder / CONFIG_FILE):
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} found in {here} or any parent folder",
        hint="run 'mlcd init' to create a project, or cd into one",
    )


#: Top-level folders no path read from a lock, pointer, manifest or run-cache entry may enter.
_PROTECTED = (".git", STATE_DIR)
_DRIVE = re.compile(r"^[A-Za-z]:")


def path_problem(path: object) -> str | None:
    """Why ``path`` is not a safe relative POSIX path (None when it is).

    Safe means: a non-empty string, relative, ``/``-separated, with no ``..``, ``.`` or empty
    part, no backslash, drive letter or NUL. Used for manifest entry names as they are (a
    tracked folder may hold a nested repository's ``.git``); project paths also go through
    ``project_path_problem``.
    """
    if not isinstance(path, str) or not path:
        return "is empty or not text"
    if "\x00" in path:
        return "contains a NUL byte"
    if "\\" in path:
        return "contains a backslash (paths are '/'-separated)"
    if path.startswith("/") or _DRIVE.match(path):
        return "is absolute (paths must be relative to the project)"
    parts = path.split("/")
    if ".." in parts:
        return "contains '..' (it would leave the project)"
    if any(part in ("", ".") for part in parts):
        return "is not normalised (empty or '.' parts)"
    return None


def project_path_problem(path: object) -> str | None:
    """``path_problem``, and also refused: ``.git`` anywhere, ``.mlcd`` at the top (no root)."""
    problem = path_problem(path)
    if problem is not None:
        return problem
    parts = str(path).lower().split("/")
    if ".git" in parts:
        return "is inside git's own folder (.git)"
    if parts[0] in _PROTECTED:
        return f"is inside {str(path).split('/', 1)[0]}/, which mlcd keeps to itself"
    return None


def project_path(root: Path, path: object, where: str, hint: str | None = None) -> Path:
    """The file ``path`` names inside the project at ``root``, refusing every unsafe path.

    The one check for paths read from ``mlcd.lock``, pointer files, manifests and run-cache
    entries before anything is written: a safe relative path (``path_problem``), not under
    ``.git/`` or ``.mlcd/``, and still inside the project once symlinks are resolved (a
    symlinked folder leading outside is refused).

    Args:
        root: the project root.
        path: the project-relative path to check.
        where: what names the path, for the message (``"mlcd.lock: stage 'train': out"``).
        hint: how to fix it, if not the default (restore the file that names it from git).

    Raises:
        UnsafePath: the path is not safe; the message names it and where it came from.
    """
    from mlcd.errors import UnsafePath

    problem = project_path_problem(path)
    if problem is None:
        assert isinstance(path, str)
        base = root.resolve()
        full = (base / path).resolve()
        if full == base or not full.is_relative_to(base):
            problem = f"leads outside the project through a symlink (to {full})"
        elif full.relative_to(base).parts[0].lower() in _PROTECTED:
            problem = "leads into .git/ or .mlcd/ through a symlink"
    if problem is not None:
        raise UnsafePath(
            f"{where} {path!r} {problem}; refused, nothing was written",
            hint=hint
            or "a hand-edited or hostile file names it: restore the file from git "
            "('git checkout -- FILE') or delete it and run 'mlcd run'",
        )
    return root / str(path)
