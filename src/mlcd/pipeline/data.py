"""Tracked data: files and folders no stage produces, versioned by pointer files.

``mlcd data add data/raw`` stores the folder in the object store and writes
``data/raw.mlcd`` next to it, a small YAML file you commit (git ignores the data itself)::

    # mlcd data pointer: commit this file; 'mlcd pull' restores the data it names.
    path: raw
    digest: 3f2a...9c.dir
    size: 524288000
    files: 2000

Pointer files rather than a section of ``mlcd.yaml``: adding data never rewrites the file you
edit by hand (and its comments), and two branches adding different data do not conflict.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import PipelineError, UnsafePath, UsageError
from mlcd.layout import project_path
from mlcd.pipeline.statcache import StatCache, walk_files
from mlcd.pipeline.status import Digests

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore

POINTER_SUFFIX = ".mlcd"
#: what a pointer of imported data says about its source (one line each)
SOURCE_KEYS = ("kind", "url", "query", "freshness", "options")
_HEADER = "# mlcd data pointer: commit this file; 'mlcd pull' restores the data it names.\n"
#: Folders never searched for pointer files.
_SKIP_DIRS = {"node_modules", "__pycache__", "venv", "site-packages"}


@dataclass(frozen=True)
class Pointer:
    """A tracked file or folder: its project path, digest, size and file count."""

    path: str
    digest: str
    size: int
    files: int = 1
    #: where the data comes from (``mlcd data import``): ``{kind, url, query, freshness,
    #: options}``; ``mlcd data update`` reads it again from there
    source: dict[str, Any] | None = None

    @property
    def pointer_path(self) -> str:
        """The project path of the pointer file."""
        return self.path + POINTER_SUFFIX

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "digest": self.digest, "size": self.size, "files": self.files}
        return {**out, "source": self.source} if self.source else out

    def render(self) -> str:
        """The text of the pointer file (``path`` is relative to the pointer's folder)."""
        lines = [
            _HEADER,
            f"path: {Path(self.path).name}\n",
            f"digest: {self.digest}\n",
            f"size: {self.size}\n",
        ]
        if self.digest.endswith(".dir"):
            lines.append(f"files: {self.files}\n")
        if self.source:
            import json

            lines.append("# imported: 'mlcd data update' reads it again from its source\n")
            for key in SOURCE_KEYS:
                value = self.source.get(key)
                if value:
                    text = json.dumps(value) if isinstance(value, dict) else str(value)
                    lines.append(f"source_{key}: {text}\n")
        return "".join(lines)


@dataclass(frozen=True)
class DataState:
    """A tracked path compared with its pointer: unchanged, modified or missing."""

    pointer: Pointer
    status: str  # unchanged | modified | missing
    current: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.pointer.to_dict(), "status": self.status, "current": self.current}


def read_pointer(root: Path, pointer_file: Path) -> Pointer:
    """Parse a pointer file (a tiny YAML subset, read without a YAML parser for speed).

    Raises:
        PipelineError: the file is not a valid pointer.
    """
    from mlcd.yamlfile import MAX_CONFIG_BYTES, read_limited

    fields: dict[str, str] = {}
    text = read_limited(pointer_file, MAX_CONFIG_BYTES, str(pointer_file))
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise _bad_pointer(pointer_file, f"line {number} is not 'key: value'")
        value = value.strip()
        fields[key.strip()] = value if key.startswith("source_") else value.strip("'\"")
    relative = pointer_file.relative_to(root).as_posix()
    try:
        name = fields["path"]
        if "/" in name or name in ("", ".", ".."):
            raise _bad_pointer(pointer_file, f"'path: {name}' must be a name in the same folder")
        folder = relative.rsplit("/", 1)[0] + "/" if "/" in relative else ""
        # A pointer names the file or folder it sits beside: 'raw.mlcd' tracks 'raw', never
        # another file ('mlcd.yaml') nor git's or mlcd's own state ('.git.mlcd').
        project_path(root, folder + name, f"{relative}: path")
        if name + POINTER_SUFFIX != pointer_file.name:
            raise UnsafePath(
                f"{relative}: path {name!r} is not the file it sits beside "
                f"({pointer_file.name.removesuffix(POINTER_SUFFIX)!r}); refused",
                hint="restore the pointer from git ('git checkout -- FILE'), or re-track the "
                "data with 'mlcd data add'",
            )
        from mlcd.digest import Digest

        digest = str(Digest.parse(fields["digest"]))
        source = _source_of(fields)
        return Pointer(
            folder + name,
            digest,
            int(fields.get("size", 0)),
            int(fields.get("files", 1)),
            source,
        )
    except KeyError as exc:
        raise _bad_pointer(pointer_file, f"missing key {exc}") from None
    except (ValueError, UsageError) as exc:
        raise _bad_pointer(pointer_file, str(exc)) from None


def _source_of(fields: dict[str, str]) -> dict[str, Any] | None:
    """The ``source_*`` keys of a pointer as a source description (None: plain data)."""
    import json

    found = {k: fields[f"source_{k}"] for k in SOURCE_KEYS if f"source_{k}" in fields}
    if not found:
        return None
    if found.get("kind") not in ("sql", "url") or not found.get("url"):
        raise ValueError("source_kind must be sql or url, with a source_url")
    source: dict[str, Any] = dict(found)
    source["options"] = json.loads(found["options"]) if found.get("options") else {}
    return source


def _bad_pointer(path: Path, problem: str) -> PipelineError:
    return PipelineError(
        f"{path} is not a valid data pointer: {problem}",
        hint="restore it from git ('git checkout -- FILE'), or re-track the data with 'mlcd data add'",
    )


def find_pointers(root: Path, skip: Iterable[str] = ()) -> list[Pointer]:
    """Every pointer file in the project (hidden folders, tracked folders and ``skip`` excluded)."""
    skipped = {str(root / s) for s in skip}
    found: list[Pointer] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        names = {e.name for e in entries}
        for entry in entries:
            if entry.name.endswith(POINTER_SUFFIX) and entry.is_file():
                found.append(read_pointer(root, Path(entry.path)))
            elif entry.is_dir(follow_symlinks=False):
                if entry.name.startswith(".") or entry.name in _SKIP_DIRS:
                    continue
                if entry.name + POINTER_SUFFIX in names or entry.path in skipped:
                    continue  # tracked data: nothing to find inside
                stack.append(Path(entry.path))
    return sorted(found, key=lambda p: p.path)


def data_status(
    root: Path, statcache: StatCache, skip: Iterable[str] = (), digests: Digests | None = None
) -> list[DataState]:
    """Each tracked path against its pointer (the stat cache keeps this to stat calls)."""
    digests = digests or Digests(root, statcache)
    states = []
    for pointer in find_pointers(root, skip):
        current = digests.of(pointer.path)
        if current is None:
            status = "missing"
        elif current != pointer.digest:
            status = "modified"
        else:
            status = "unchanged"
        states.append(DataState(pointer, status, current))
    return states


def _project_relative(root: Path, path: str | os.PathLike[str]) -> str:
    full = Path(os.path.normpath(Path(path).absolute()))
    try:
        relative = full.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(
            f"{path} is outside the project ({root})",
            hint="move or copy the data into the project folder, then add it",
        ) from None
    if relative in ("", "."):
        raise UsageError("cannot track the whole project", hint="add a file or folder inside it")
    return relative


def _refuse_links_out(root: Path, relative: str) -> None:
    """Refuse data reached through a symlink that leads outside the project (its bytes would
    be stored, pushed and shared as if they were the project's).

    Raises:
        UnsafePath: the path, or a file or folder inside it, links outside the project.
    """
    hint = "copy the data into the project instead of linking to it"
    project_path(root, relative, "mlcd data add:", hint=hint)
    full = root / relative
    if not full.is_dir():
        return
    base = root.resolve()
    # scandir's entries know whether they are links (no lstat per file); links are not
    # followed into, as os.walk would not
    stack = [str(full)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    if not Path(entry.path).resolve().is_relative_to(base):
                        inner = Path(entry.path).relative_to(root).as_posix()
                        project_path(root, inner, "mlcd data add:", hint=hint)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def _check_addable(relative: str, produced: dict[str, str], tracked: Iterable[str]) -> None:
    first = relative.split("/", 1)[0]
    if first.startswith(".mlcd") or first == ".git":
        raise UsageError(f"'{relative}' is mlcd's or git's own state and cannot be tracked")
    for path, stage in produced.items():
        if relative == path or relative.startswith(path + "/") or path.startswith(relative + "/"):
            raise UsageError(
                f"'{relative}' overlaps '{path}', an output of stage '{stage}'",
                hint="stage outputs are versioned by 'mlcd run' already; track only raw inputs",
            )
    for other in tracked:
        if relative.startswith(other + "/") or other.startswith(relative + "/"):
            raise UsageError(
                f"'{relative}' overlaps '{other}', which is tracked already",
                hint=f"track either the folder or what is inside it (remove {other}.mlcd first)",
            )


def _fast_settings(root: Path) -> tuple[str, str, str] | None:
    """``(store URL, object folder, cache.link)`` of a project whose ``mlcd.yaml`` is byte for
    byte the one last validated in full (``mlcd.layout.validated_settings``), with a local
    object folder; else None."""
    from mlcd.layout import validated_settings

    if os.environ.get("MLCD_REMOTE"):
        return None
    known = validated_settings(root)
    if known is None:
        return None
    artifacts = os.environ.get("MLCD_ARTIFACTS") or known["artifacts"]
    if "://" in artifacts:
        return None  # a remote or file:// URL: the object store factory decides
    folder = Path(artifacts)
    folder = folder if folder.is_absolute() else root / folder
    return os.environ.get("MLCD_STORE") or known["store"], str(folder), known["cache_link"]


def add_data_fast(
    paths: Iterable[str | os.PathLike[str]], start: str | os.PathLike[str] = "."
) -> list[tuple[Pointer, bool]] | None:
    """``mlcd data add`` without pydantic or SQLAlchemy: the same :func:`add_data` and the
    same ``data`` run record (through ``mlcd.store.lite``), when ``mlcd.yaml`` is unchanged
    since its last full check, the object store is a local folder and the metadata store a
    SQLite file at the current schema. Returns None when any of that does not hold (nothing
    was done: open the ``Project`` and call :func:`add_data`).

    Raises:
        UsageError, PipelineError, ObjectError: as :func:`add_data`.
    """
    import threading

    from mlcd.errors import ConfigError
    from mlcd.layout import find_root
    from mlcd.store import lite

    try:
        root = find_root(start)
    except ConfigError:
        return None  # the usual path says what is wrong
    settings = _fast_settings(root)
    if settings is None:
        return None
    store_url, folder, link = settings
    store = lite.open_fast(store_url, root)
    if store is None:
        return None
    import gc

    # A short command that builds thousands of small objects and no reference cycles: the
    # cyclic collector would only walk them (and every module's objects) again and again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from mlcd.objects.local import LocalObjectStore
        from mlcd.pipeline.record import _user, git_state
        from mlcd.pipeline.snapshot import load_snapshot
        from mlcd.store.records import ArtifactRef

        snapshot = load_snapshot(root)
        produced = {p: spec.name for spec in snapshot.stages.values() for p in spec.produced}
        git: list[tuple[str | None, bool | None]] = []
        # git runs in subprocesses while the data is copied and hashed
        asker = threading.Thread(target=lambda: git.append(git_state(root)), daemon=True)
        asker.start()
        with StatCache(snapshot.state_dir / "statcache.db") as statcache:
            added = add_data(root, paths, LocalObjectStore(folder, link), statcache, produced)
        asker.join()
        commit, dirty = git[0] if git else (None, None)

        def work(conn: lite.LiteConn) -> str:
            run_id = lite.create_run(
                conn, name="data add", kind="data", git_commit=commit, git_dirty=dirty, user=_user()
            )
            lite.add_artifacts(
                conn,
                run_id,
                [ArtifactRef("output", p.path, p.digest, p.size) for p, _ in added],
            )
            lite.end_run(conn, run_id, "finished")
            return run_id

        store.transact(work)
    finally:
        store.dispose()
        if collecting:
            gc.enable()
    return added


def _reads_as_listed(objects: ObjectStore) -> bool:
    """Whether ``objects.put_tree`` reads every new file checking that its stat is the listed
    one before and after (the local store copying or cloning; a hard link is hashed in place
    without that check, and other stores do not check)."""
    from mlcd.objects.local import LocalObjectStore

    return isinstance(objects, LocalObjectStore) and objects.link != "hardlink"


def add_data(
    root: Path,
    paths: Iterable[str | os.PathLike[str]],
    objects: ObjectStore,
    statcache: StatCache,
    produced: dict[str, str] | None = None,
    source: dict[str, Any] | None = None,
) -> list[tuple[Pointer, bool]]:
    """Track files or folders: store their content and write their pointer files
    (``source``: where imported data comes from, written into the pointer).

    Args:
        root: the project root.
        paths: what to track (relative to the current folder or absolute).
        objects: the project's object store.
        statcache: the project's stat cache (unchanged files are not hashed again).
        produced: stage outputs (path -> stage), which may not be tracked this way.

    Returns:
        ``(pointer, changed)`` per path; ``changed`` is False when the pointer was current.

    Raises:
        UsageError: a path is missing, outside the project, or overlaps a stage output or
            tracked data.
    """
    from mlcd.digest import Digest
    from mlcd.pipeline.lockfile import write_atomic
    from mlcd.pipeline.outputs import ensure_gitignored

    produced = produced or {}
    relatives = [_project_relative(root, path) for path in paths]
    # The folders being added are not searched: their own files are listed below anyway.
    tracked = [p.path for p in find_pointers(root, skip=relatives)]
    results = []
    for relative in relatives:
        full = root / relative
        if not full.exists():
            raise UsageError(f"cannot track '{relative}': no such file or folder")
        _refuse_links_out(root, relative)
        _check_addable(relative, produced, [t for t in tracked if t != relative])
        # Files the stat cache does not know are read once, by the object store, which copies
        # and hashes them in one pass; their digests then go into the stat cache.
        if full.is_dir():
            files = walk_files(str(full))
            inner = next((rel for rel, _ in files if rel.endswith(POINTER_SUFFIX)), None)
            if inner is not None:
                raise UsageError(
                    f"'{relative}' contains '{relative}/{inner}', the pointer of tracked data",
                    hint="track either the folder or what is inside it (remove the inner "
                    "pointer first)",
                )
            known = statcache.known_below(full, files)
            # The listing just made is stored as it is (not walked and stat'ed again); a
            # file whose stat moved since is refused by the store.
            stored, entries = objects.put_tree(
                full, files, known={rel: Digest(h) for rel, h in known.items()}
            )
            new = [entry for entry in entries if entry.path not in known]
            if _reads_as_listed(objects):
                # the store read each file under its listed stat (checked before and after):
                # recorded under that stat, with no second stat per file
                stats = dict(files)
                statcache.record_listed(full, [(e.path, stats[e.path], e.digest.hex) for e in new])
            else:
                for entry in new:
                    try:
                        statcache.record(full / entry.path, entry.digest.hex)
                    except FileNotFoundError:  # removed since it was stored
                        pass
            digest = str(stored)
            pointer = Pointer(relative, digest, sum(e.size for e in entries), len(entries), source)
        else:
            st = full.stat()
            hex_ = statcache.known(full, st)
            stored = objects.put_file(full, Digest(hex_) if hex_ else None)
            if hex_ is None:
                try:
                    statcache.record(full, stored.hex)
                except FileNotFoundError:  # removed since it was stored
                    pass
            digest = str(stored)
            pointer = Pointer(relative, digest, st.st_size, 1, source)
        statcache.flush()
        pointer_file = root / pointer.pointer_path
        previous = pointer_file.read_text(encoding="utf-8") if pointer_file.exists() else None
        text = pointer.render()
        if previous != text:
            write_atomic(pointer_file, text)
        ensure_gitignored(root, [relative])
        tracked.append(relative)
        results.append((pointer, previous != text))
    return results
