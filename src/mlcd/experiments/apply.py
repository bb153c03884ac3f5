"""Applying and removing experiments: ``mlcd exp apply`` and ``mlcd exp remove``.

Applying writes the experiment's params files and ``mlcd.lock`` into the work tree and restores
its outputs from the object store, byte for byte, so ``mlcd status`` is up to date after it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import PipelineError, UsageError
from mlcd.experiments.run import LOCK_ARTIFACT, PARAMS_PREFIX, TAG_EXP, TAG_NAME
from mlcd.tracking.query import RunRecord

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.store import Store


def find_experiment(conn: Any, ref: str) -> RunRecord:
    """The experiment named ``ref`` (the newest of that name), else by run id or id prefix.

    Raises:
        UsageError: no experiment by that name or id.
    """
    from sqlalchemy import select

    from mlcd.errors import NotFound
    from mlcd.store.tables import run_tags, runs
    from mlcd.tracking.query import get

    by_name = conn.execute(
        select(run_tags.c.run_id)
        .join(runs, runs.c.id == run_tags.c.run_id)
        .where(run_tags.c.key == TAG_NAME, run_tags.c.value == ref)
        .order_by(runs.c.started_at.desc())
        .limit(1)
    ).first()
    missing = UsageError(f"no experiment '{ref}'", hint="list them with 'mlcd exp show'")
    try:
        record = get(conn, by_name[0] if by_name else ref)
    except NotFound as exc:
        raise missing from exc
    if record.tags.get(TAG_EXP) != "1":
        raise missing
    return record


def _dirty(root: Path, files: list[str]) -> list[str]:
    """Which of ``files`` git reports as changed and not committed ([] outside git)."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *files],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if status.returncode != 0:
        return []
    return [line[3:] for line in status.stdout.splitlines() if line.strip()]


def apply_experiment(
    root: Path, store: Store, objects: ObjectStore, ref: str, force: bool = False
) -> dict[str, Any]:
    """Bring experiment ``ref`` into the work tree at ``root``.

    Args:
        root: the project root.
        store: the metadata store.
        objects: the object store holding the experiment's outputs.
        ref: the experiment's name, run id or id prefix.
        force: overwrite params files that have uncommitted changes.

    Returns:
        ``{"id", "name", "params_files", "restored"}``.

    Raises:
        UsageError: no such experiment, or params files with uncommitted changes; nothing
            was written.
        PipelineError: the experiment kept no lock, or its outputs are no longer stored.
    """
    from mlcd.digest import Digest
    from mlcd.layout import project_path
    from mlcd.pipeline.lockfile import LOCK_FILE, parse_lock, write_atomic
    from mlcd.pipeline.outputs import ensure_gitignored, in_git, restorable, restore_outputs
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.pipeline.statcache import StatCache
    from mlcd.pipeline.status import Digests
    from mlcd.store import runs

    with store.read() as conn:
        record = find_experiment(conn, ref)
        refs = [a for a in runs.artifacts_of(conn, record.id) if a.role == "artifact"]
    name = record.tags.get(TAG_NAME) or record.id
    lock_ref = next((a for a in refs if a.path == LOCK_ARTIFACT), None)
    if lock_ref is None:
        raise PipelineError(
            f"experiment '{name}' kept no mlcd.lock, so it cannot be applied",
            hint="run it again with mlcd exp run",
        )
    params = {
        a.path.removeprefix(PARAMS_PREFIX): a for a in refs if a.path.startswith(PARAMS_PREFIX)
    }
    for file in params:
        project_path(root, file, f"experiment '{name}': params file")
    if not force:
        dirty = _dirty(root, sorted(params))
        if dirty:
            raise UsageError(
                f"params file(s) with uncommitted changes: {', '.join(dirty)}",
                hint="commit them first, or pass --force to overwrite them",
            )
    lock_text = objects.get_bytes(Digest.parse(lock_ref.digest)).decode("utf-8")
    lock = parse_lock(lock_text, root / LOCK_FILE)
    texts = {f: objects.get_bytes(Digest.parse(a.digest)) for f, a in params.items()}
    outputs = {p: d for entry in lock.values() for p, d in entry.outs.items()}
    missing = [p for p, d in outputs.items() if not restorable(objects, {p: d})]
    if missing:
        raise PipelineError(
            f"output(s) of experiment '{name}' are no longer stored: {', '.join(missing)}",
            hint="pull them from the remote (mlcd pull), or run the experiment again",
        )
    for file, data in texts.items():
        path = root / file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data.decode("utf-8"))
    write_atomic(root / LOCK_FILE, lock_text)
    snapshot = load_snapshot(root)
    with StatCache(snapshot.state_dir / "statcache.db") as statcache:
        digests = Digests(root, statcache)
        current = {p: digests.of(p) for p in outputs}
        restored = restore_outputs(objects, statcache, root, outputs, current)
    if in_git(root):
        cached = [o.path for s in snapshot.stages.values() for o in s.outs if o.cache]
        ensure_gitignored(root, [p for p in cached if p in outputs])
    return {"id": record.id, "name": name, "params_files": sorted(texts), "restored": restored}


def remove_experiment(store: Store, ref: str) -> dict[str, Any]:
    """Delete experiment ``ref``'s run record (its objects stay until ``mlcd gc``).

    Raises:
        UsageError: no such experiment.
    """
    from mlcd.store import runs

    with store.read() as conn:
        record = find_experiment(conn, ref)
    store.transact(lambda conn: runs.delete_run(conn, record.id))
    return {"id": record.id, "name": record.tags.get(TAG_NAME) or record.id}
