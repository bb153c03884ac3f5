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
DEFAULT_STORE = f"sqlite:///{STATE_DIR}/mlcd.db"
DEFAULT_ARTIFACTS = f"{STATE_DIR}/objects"
#: ``.mlcd/`` file naming the digest of the ``mlcd.yaml`` text ``load_config`` last accepted,
#: with its ``store`` and ``artifacts`` (see ``validated_settings``).
VALIDATED_FILE = "config.validated.json"


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


def _schema_stamp() -> str:
    """Changes whenever the code that validates ``mlcd.yaml`` could have changed: the size and
    mtime of the package's ``__init__`` (its version) and of the schema's modules."""
    here = Path(__file__).parent
    parts = []
    for module in (here / "__init__.py", here / "config.py", here / "contracts" / "spec.py"):
        try:
            stat = module.stat()
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "/".join(parts)


def validated_settings(root: Path) -> dict[str, str] | None:
    """``store``, ``artifacts`` and ``cache_link`` (``cache.link``) of ``ROOT/mlcd.yaml``
    without parsing it, when its bytes are exactly those the same code last validated in full
    (``remember_validated``); else None (then ``load_config`` must parse and validate it).
    Environment overrides are not applied.

    A short script (``mlcd.start_run(); log_metric(...)``) needs only the first two values; the
    schema (pydantic, the contracts) costs more than the rest of the script.
    """
    import hashlib
    import json

    try:
        data = (root / CONFIG_FILE).read_bytes()
        cached = json.loads((root / STATE_DIR / VALIDATED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("schema") != _schema_stamp():
        return None
    if cached.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    settings = cached.get("settings")
    if not isinstance(settings, dict) or set(settings) != {"store", "artifacts", "cache_link"}:
        return None
    if not all(isinstance(v, str) for v in settings.values()):
        return None
    return settings


def remember_validated(root: Path, text: str, settings: dict[str, str]) -> None:
    """Record that ``text`` (the ``mlcd.yaml`` just validated) gives ``settings``: best effort,
    only into an existing ``.mlcd/``, atomically (a reader sees the old record or the new)."""
    import hashlib
    import json

    state = root / STATE_DIR
    if not state.is_dir():
        return
    record = {
        "schema": _schema_stamp(),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "settings": settings,
    }
    target = state / VALIDATED_FILE
    try:
        if target.is_file() and json.loads(target.read_text(encoding="utf-8")) == record:
            return
    except (OSError, ValueError):
        pass
    temporary = state / f".{VALIDATED_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temporary, target)
    except OSError:
        try:
            temporary.unlink()
        except OSError:
            pass


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
