"""``mlcd import dvc``: a DVC project's pipeline, lock, pointers and cache into mlcd.

What it writes:

* ``mlcd.yaml``: the stages of ``dvc.yaml`` translated (``dvc_yaml``), DVC's model artifacts
  as ``models:``. An existing ``mlcd.yaml`` is kept when it already says the same; another
  one is replaced only with ``force`` (its store, artifacts and other sections are kept).
* ``<path>.mlcd`` pointers beside each ``<path>.dvc`` (DVC's files are left in place).
* The bytes: every object the lock and the pointers name, read from DVC's cache (or a DVC
  remote), checked against its MD5, stored under BLAKE3 (``dvc_cache``).
* For every stage whose ``dvc.lock`` entry still describes it (same command, same deps and
  params as now — what ``dvc status`` calls up to date): a run-cache entry and an
  ``mlcd.lock`` entry with mlcd's own fingerprint. The first ``mlcd run`` then restores or
  keeps every such stage instead of running it, and runs exactly the stages DVC would.

Everything is read and verified before anything is written, so a refused import (a
construct that does not translate, a corrupt cache file) leaves the project as it was. Run
again, it writes nothing new.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.adopt.dvc_cache import DvcObjects, Importer
from mlcd.adopt.dvc_yaml import DVC_FILE, Translation, translate
from mlcd.config import Config, parse_config
from mlcd.errors import ConfigError, PipelineError
from mlcd.layout import CONFIG_FILE, STATE_DIR

DVC_LOCK = "dvc.lock"
HEADER = "# Translated from dvc.yaml by 'mlcd import dvc'; edit freely (see docs/migrating.md).\n"
#: ``progress(step, done, total)``.
Progress = Callable[[str, int, int | None], None]


@dataclass
class StageImport:
    """One stage: imported (its DVC result now in mlcd's run cache) or why not."""

    name: str
    imported: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "imported": self.imported, "reason": self.reason}


@dataclass
class DvcImportSummary:
    """What ``import_dvc`` translated, imported and left behind."""

    root: str
    config_written: bool = False
    stages: list[StageImport] = field(default_factory=list)
    pointers: list[dict[str, Any]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    source: str = "cache"
    dry_run: bool = False
    config_text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "source": self.source,
            "dry_run": self.dry_run,
            "config_written": self.config_written,
            "stages": [s.to_dict() for s in self.stages],
            "pointers": self.pointers,
            "models": self.models,
            "notes": self.notes,
            "objects": {"files": self.files, "bytes": self.bytes},
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------- the lock
@dataclass(frozen=True)
class _LockStage:
    cmd: str
    deps: dict[str, tuple[str, bool]]  # path (from wdir) -> (md5, legacy hash)
    params: dict[str, dict[str, Any]]
    outs: dict[str, tuple[str, bool]]


def _entry_md5(item: Mapping[str, Any]) -> tuple[str, bool] | None:
    md5 = item.get("md5")
    if not md5:
        return None
    return str(md5), item.get("hash") != "md5"


def read_dvc_lock(root: Path) -> dict[str, _LockStage]:
    """The stages of ``dvc.lock`` (schema 2.0), empty when there is none.

    Raises:
        ConfigError: not a DVC 2+ lock file.
    """
    from mlcd.adopt.dvc_yaml import _load_yaml

    path = root / DVC_LOCK
    if not path.is_file():
        return {}
    document = _load_yaml(path, "DVC lock") or {}
    if not isinstance(document, Mapping) or str(document.get("schema", "")) != "2.0":
        raise ConfigError(
            f"{DVC_LOCK} is not a DVC 2/3 lock file (schema '2.0')",
            hint="run 'dvc repro' with DVC 2 or newer to rewrite it, then import again",
        )
    stages = {}
    for name, body in (document.get("stages") or {}).items():
        body = body or {}
        cmd = body.get("cmd", "")
        stages[str(name)] = _LockStage(
            cmd=" && ".join(cmd) if isinstance(cmd, list) else str(cmd),
            deps={
                str(d["path"]): md5
                for d in body.get("deps") or []
                if (md5 := _entry_md5(d)) is not None
            },
            params={str(f): dict(v or {}) for f, v in (body.get("params") or {}).items()},
            outs={
                str(o["path"]): md5
                for o in body.get("outs") or []
                if (md5 := _entry_md5(o)) is not None
            },
        )
    return stages


# ---------------------------------------------------------------- mlcd.yaml
def _with_lock_params(translation: Translation, lock: Mapping[str, _LockStage]) -> None:
    """Params DVC recorded for a stage that the translation did not name (DVC tracks some
    implicitly): added, so the fingerprint covers what DVC's status covers."""
    from mlcd.adopt.dvc_yaml import DEFAULT_PARAMS

    for name, stage in translation.stages.items():
        entry = lock.get(name)
        if entry is None:
            continue
        declared: dict[str, set[str]] = {}
        for item in stage.get("params", []):
            if isinstance(item, str):
                declared.setdefault(DEFAULT_PARAMS, set()).add(item)
            else:
                for file, keys in item.items():
                    declared.setdefault(file, set()).update(keys)
        wdir = stage.get("wdir", ".")
        for file, values in entry.params.items():
            missing = [k for k in values if k not in declared.get(file, set())]
            if not missing:
                continue
            params = stage.setdefault("params", [])
            if file == DEFAULT_PARAMS and wdir in ("", "."):
                params.extend(missing)
            else:
                params.append({file: missing})


def render_config(translation: Translation, existing: Mapping[str, Any] | None) -> str:
    """The text of ``mlcd.yaml``: ``existing``'s other sections kept, stages and models new."""
    import yaml

    document: dict[str, Any] = dict(existing or {"version": 1})
    document["stages"] = translation.stages
    if translation.models:
        models = dict(document.get("models") or {})
        models.update(translation.models)
        document["models"] = models
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    return HEADER + body


def _config_text(root: Path, translation: Translation, force: bool) -> tuple[str, bool]:
    """``(text, must_write)`` of the mlcd.yaml to use.

    Raises:
        ConfigError: an mlcd.yaml with other stages is there and ``force`` is not set.
    """
    from mlcd.adopt.dvc_yaml import _load_yaml

    path = root / CONFIG_FILE
    if not path.exists():
        return render_config(translation, None), True
    current = path.read_text(encoding="utf-8")
    existing = _load_yaml(path, "mlcd config") or {}
    same = existing.get("stages") == translation.stages and all(
        (existing.get("models") or {}).get(k) == v for k, v in translation.models.items()
    )
    if same:
        return current, False
    if not existing.get("stages"):
        # 'mlcd init' ran first: its sections are kept, the stages filled in.
        return render_config(translation, existing), True
    if not force:
        raise ConfigError(
            f"{CONFIG_FILE} exists and its stages differ from dvc.yaml's; nothing was imported",
            hint="pass --force to replace its stages (store, artifacts and the other sections "
            "are kept), or move it aside",
        )
    return render_config(translation, existing), True


# ---------------------------------------------------------------- stages
def _resolved(root: Path, wdir: str, path: str) -> str:
    from mlcd.pipeline.stage import resolve_path

    return resolve_path(root, wdir, path)[0]


def _metrics_of(objects: Any, digest: str, path: str) -> dict[str, float]:
    from mlcd.digest import Digest
    from mlcd.pipeline.outputs import read_metrics

    with tempfile.TemporaryDirectory(prefix="mlcd-dvc-") as scratch:
        target = Path(scratch) / Path(path).name
        objects.get_file(Digest.parse(digest), target)
        return read_metrics(target)


@dataclass
class _Prepared:
    name: str
    fingerprint: str
    entry: Any  # LockEntry
    metrics: dict[str, Any]


def _prepare_stage(
    root: Path,
    config: Config,
    name: str,
    lock: _LockStage | None,
    importer: Importer,
    objects: Any,
) -> _Prepared | str:
    """The stage's mlcd lock entry from its DVC result, or why it cannot be imported."""
    from mlcd.pipeline.fingerprint import stage_fingerprint
    from mlcd.pipeline.lockfile import LockEntry
    from mlcd.pipeline.stage import render_cmd, spec_from_config

    if lock is None:
        return "not in dvc.lock (never ran in DVC): 'mlcd run' runs it"
    spec = spec_from_config(name, config.stages[name], root, config.params_file)
    params = _current_params(root, spec)
    if params is None:
        return "a params file or key it reads is missing: it will run"
    cmd = render_cmd(spec.cmd, params)
    if lock.cmd != cmd:
        return f"command changed since dvc.lock ('{lock.cmd}' -> '{cmd}'): it will run"
    for file, values in lock.params.items():
        resolved = _resolved(root, spec.wdir, file)
        for key, value in flatten_params(values).items():
            if params.get(resolved, {}).get(key, _ABSENT) != value:
                return f"param {key} changed since dvc.lock (DVC would run it too): it will run"
    outs: dict[str, str] = {}
    lock_outs = {_resolved(root, spec.wdir, p): v for p, v in lock.outs.items()}
    for path in spec.produced:
        if path not in lock_outs:
            inner = _inside(objects, outs, path)
            if inner is None:
                return f"'{path}' is not recorded in dvc.lock: it will run"
            outs[path] = inner
            continue
        md5, legacy = lock_outs[path]
        where = f"stage '{name}': {path}"
        digest = importer.from_cache(md5, where, legacy) or importer.from_workspace(
            md5, root / path, legacy
        )
        if digest is None:
            return (
                f"'{path}' (MD5 {md5}) is neither in the DVC cache nor in the workspace: "
                "it will run (or 'dvc fetch' first, then import again)"
            )
        outs[path] = digest
    deps: dict[str, str | None] = {}
    lock_deps = {_resolved(root, spec.wdir, p): v for p, v in lock.deps.items()}
    for path in spec.deps:
        if path not in lock_deps:
            return f"dep '{path}' is not recorded in dvc.lock: it will run"
        md5, legacy = lock_deps[path]
        full = Path(path) if os.path.isabs(path) else root / path
        # The workspace first: a dep that changed since dvc.lock makes the stage run, as in DVC.
        digest = importer.from_workspace(md5, full, legacy)
        if digest is None:
            return f"dep '{path}' changed since dvc.lock (DVC would run it too): it will run"
        deps[path] = digest
    fingerprint = stage_fingerprint(spec, deps, params)
    metrics = {m: _metrics_of(objects, outs[m], m) for m in spec.metrics}
    entry = LockEntry(fingerprint, spec.cmd, deps, params, outs, metrics)
    return _Prepared(name, fingerprint, entry, metrics)


def _inside(objects: Any, outs: Mapping[str, str], path: str) -> str | None:
    """The digest of ``path`` inside an out folder already imported (a metrics file in it)."""
    from mlcd.digest import Digest

    for out, digest in outs.items():
        if digest.endswith(".dir") and path.startswith(out + "/"):
            relative = path[len(out) + 1 :]
            for entry in objects.read_manifest(Digest.parse(digest)):
                if entry.path == relative:
                    return str(entry.digest)
    return None


_ABSENT = object()


def flatten_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """A lock's params of one file with sections made leaves, as mlcd records them."""
    from mlcd.params import flatten

    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(flatten(value, key) if isinstance(value, Mapping) and value else {key: value})
    return flat


def _current_params(root: Path, spec: Any) -> dict[str, dict[str, Any]] | None:
    """The stage's params as the params files say now (None when one is unreadable)."""
    from mlcd.adopt.dvc_yaml import _load_yaml
    from mlcd.pipeline.fingerprint import stage_params

    data = {}
    for ref in spec.params:
        path = root / ref.file
        if not path.is_file():
            return None
        data[ref.file] = _load_yaml(path, "params file") or {}
    try:
        return stage_params(spec, data)
    except ConfigError:
        return None


# ---------------------------------------------------------------- pointers
def _dvc_pointers(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    from mlcd.adopt.dvc_yaml import _load_yaml

    found = []
    for path in sorted(root.rglob("*.dvc")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & {".dvc", ".git", STATE_DIR} or not path.is_file():
            continue
        data = _load_yaml(path, "DVC pointer") or {}
        if isinstance(data, Mapping):
            found.append((path, dict(data)))
    return found


def _import_pointers(
    root: Path, importer: Importer, summary: DvcImportSummary
) -> list[tuple[Any, str]]:
    from mlcd.digest import Digest
    from mlcd.pipeline.data import Pointer

    pointers = []
    for path, data in _dvc_pointers(root):
        relative_file = path.relative_to(root).as_posix()
        if data.get("deps"):
            summary.notes.append(
                f"{relative_file} came from 'dvc import' or 'dvc import-url': its data is "
                "imported as plain tracked data (the link to its source is not kept)"
            )
        for out in data.get("outs") or []:
            md5 = out.get("md5")
            if not md5 or "path" not in out:
                continue
            legacy = out.get("hash") != "md5"
            target = (path.parent / str(out["path"])).resolve()
            relative = target.relative_to(root.resolve()).as_posix()
            where = relative_file
            digest = importer.from_cache(str(md5), where, legacy) or importer.from_workspace(
                str(md5), target, legacy
            )
            if digest is None:
                raise PipelineError(
                    f"{relative_file}: '{relative}' (MD5 {md5}) is neither in the DVC cache nor "
                    "in the workspace; nothing was written",
                    hint="run 'dvc fetch' (or 'dvc pull') first, or import with --remote NAME",
                )
            files = (
                len(importer.objects.read_manifest(Digest.parse(digest)))
                if digest.endswith(".dir")
                else 1
            )
            pointer = Pointer(relative, digest, importer.sizes.get(digest, 0), files)
            pointers.append((pointer, relative_file))
    return pointers


# ---------------------------------------------------------------- the import
def _quiet(step: str, done: int, total: int | None) -> None:
    return None


def import_dvc(
    root: Path,
    *,
    remote: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> DvcImportSummary:
    """Import the DVC project at ``root`` (see the module docstring).

    Raises:
        ConfigError: no dvc.yaml/.dvc files, a construct that does not translate, or an
            mlcd.yaml with other stages (without ``force``).
        CorruptObject: a DVC object whose bytes do not match its MD5.
    """
    started = time.perf_counter()
    root = root.resolve()
    tell: Progress = progress or _quiet
    has_pipeline = (root / DVC_FILE).is_file()
    if not has_pipeline and not _dvc_pointers(root):
        raise ConfigError(
            f"no {DVC_FILE} and no .dvc files in {root}",
            hint="run 'mlcd import dvc PATH' with the root of a DVC project",
        )
    summary = DvcImportSummary(str(root), source=f"remote {remote}" if remote else "cache")
    summary.dry_run = dry_run
    translation = translate(root) if has_pipeline else Translation()
    lock = read_dvc_lock(root)
    _with_lock_params(translation, lock)
    summary.notes.extend(translation.notes)
    summary.models = sorted(translation.models)
    text, must_write = _config_text(root, translation, force)
    config = parse_config(text, CONFIG_FILE)
    summary.config_text = text
    if dry_run:
        summary.stages = [StageImport(n, False, "dry run") for n in translation.stages]
        summary.seconds = time.perf_counter() - started
        return summary

    from mlcd.config import _apply_env
    from mlcd.objects import open_object_store

    config = _apply_env(config, os.environ)
    objects = open_object_store(config.artifacts, root=root, link=config.cache.link)
    source = DvcObjects(root, remote)
    scratch = Path(tempfile.mkdtemp(prefix=".mlcd-dvc-", dir=root))
    try:
        importer = Importer(objects, source, scratch)
        tell("pointers", 0, None)
        pointers = _import_pointers(root, importer, summary)
        prepared: list[_Prepared] = []
        names = list(translation.stages)
        for index, name in enumerate(names):
            tell("stages", index, len(names))
            outcome = _prepare_stage(root, config, name, lock.get(name), importer, objects)
            if isinstance(outcome, str):
                summary.stages.append(StageImport(name, False, outcome))
            else:
                prepared.append(outcome)
                summary.stages.append(StageImport(name, True, "restored from DVC's result"))
        tell("stages", len(names), len(names))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    unknown = sorted(set(lock) - set(translation.stages))
    if unknown:
        summary.notes.append(
            f"dvc.lock names stage(s) {', '.join(unknown)} that dvc.yaml no longer declares: "
            "left out"
        )
    _write(root, config, text, must_write, pointers, prepared, summary, objects)
    summary.files, summary.bytes = importer.files, importer.bytes
    summary.seconds = time.perf_counter() - started
    return summary


def _write(
    root: Path,
    config: Config,
    text: str,
    must_write: bool,
    pointers: list[tuple[Any, str]],
    prepared: list[_Prepared],
    summary: DvcImportSummary,
    objects: Any,
) -> None:
    """Write mlcd.yaml, pointers, run-cache entries, the import's run and mlcd.lock."""
    from mlcd.pipeline.lockfile import read_lock, update_lock, write_atomic
    from mlcd.pipeline.outputs import ensure_gitignored
    from mlcd.pipeline.record import git_state
    from mlcd.store import Store, cache, events, runs

    if must_write:
        write_atomic(root / CONFIG_FILE, text)
        summary.config_written = True
    _ignore_state(root)
    changed = []
    for pointer, dvc_file in pointers:
        target = root / pointer.pointer_path
        rendered = pointer.render()
        if not target.exists() or target.read_text(encoding="utf-8") != rendered:
            write_atomic(target, rendered)
            changed.append((pointer, dvc_file))
        ensure_gitignored(root, [pointer.path])
        restored = _checkout(root, pointer, objects)
        summary.pointers.append({**pointer.to_dict(), "from": dvc_file, "restored": restored})
    existing = read_lock(root)
    new = [p for p in prepared if existing.get(p.name) != p.entry]
    if not new and not changed:
        return  # imported before: nothing new to record
    commit, dirty = git_state(root)
    store = Store(config.store, root=root)
    try:

        def work(conn: Any) -> None:
            run_id = runs.create_run(
                conn, name="dvc import", kind="data", git_commit=commit, git_dirty=dirty
            )
            refs = [runs.ArtifactRef("output", p.path, p.digest, p.size) for p, _ in changed]
            for item in new:
                refs.extend(
                    runs.ArtifactRef("output", path, digest, None, item.name)
                    for path, digest in item.entry.outs.items()
                )
                cache.put_entry(
                    conn, item.fingerprint, item.name, dict(item.entry.outs), item.metrics, run_id
                )
            runs.add_artifacts(conn, run_id, refs)
            runs.set_tags(conn, run_id, {"mlcd.imported_from": "dvc"})
            runs.end_run(conn, run_id, "finished")
            events.record(
                conn,
                "dvc.imported",
                run_id=run_id,
                reason=f"mlcd import dvc {root}",
                details={
                    "stages": [p.name for p in new],
                    "pointers": [p.path for p, _ in changed],
                },
            )

        store.transact(work)
    finally:
        store.dispose()
    order = list(config.stages)
    update_lock(root, {p.name: p.entry for p in new}, order, root / STATE_DIR, keep_only=order)


def _checkout(root: Path, pointer: Any, objects: Any) -> bool:
    """Put tracked data that is missing from the workspace there (as 'dvc pull' would)."""
    from mlcd.digest import Digest
    from mlcd.layout import project_path

    target = project_path(root, pointer.path, f"{pointer.pointer_path}: path")
    if target.exists():
        return False
    digest = Digest.parse(pointer.digest)
    if digest.is_dir:
        objects.get_dir(digest, target)
    else:
        objects.get_file(digest, target)
    return True


def _ignore_state(root: Path) -> None:
    """``.mlcd/`` in the project's .gitignore, as ``mlcd init`` does."""
    ignore = root / ".gitignore"
    text = ignore.read_text(encoding="utf-8") if ignore.exists() else ""
    if any(line.strip().rstrip("/") in (STATE_DIR, "/" + STATE_DIR) for line in text.splitlines()):
        return
    prefix = "\n" if text and not text.endswith("\n") else ""
    with open(ignore, "a", encoding="utf-8") as handle:
        handle.write(f"{prefix}/{STATE_DIR}/\n")
