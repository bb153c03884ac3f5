"""Scratch tasks: a stage command run away from the project, its files moved by digest.

The driver (``mlcd run``) makes sure every input of the stage is in the object store
(``stage_in``), a worker fetches them into a scratch folder of its own, runs the command
there and puts what it wrote back (``run_in_scratch``), and the driver writes those outputs
and the log into the workspace (``stage_out``). Nothing on the worker reads the project
folder: only the object store (S3 or any fsspec URL) is shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import ObjectNotFound

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.pipeline.executors import Job
    from mlcd.pipeline.stage import StageSpec

#: Environment variables that configure object-store clients (credentials, endpoints): the
#: worker opens the store with the driver's values while the task runs.
_STORE_ENV = ("AWS_", "GOOGLE_", "GCS_", "AZURE_", "FSSPEC_", "BOTO_")
#: Where workers make their scratch folders (default: the node's temp folder).
SCRATCH_ENV = "MLCD_SCRATCH_DIR"


def job_inputs(
    spec: StageSpec, deps: Mapping[str, str | None], produced: Mapping[str, str | None]
) -> dict[str, str | None]:
    """What the command of ``spec`` reads, as project paths with their digests: the deps,
    the params files (digest unknown) and the ``persist`` outs it finds in place.

    Deps outside the project (absolute paths) are left out: a worker reads them where they are.
    """
    inputs: dict[str, str | None] = {p: d for p, d in deps.items() if not os.path.isabs(p)}
    for ref in spec.params:
        if not os.path.isabs(ref.file):
            inputs.setdefault(ref.file, None)
    for out in spec.outs:
        if out.persist and produced.get(out.path):
            inputs[out.path] = produced[out.path]
    return inputs


@dataclass(frozen=True)
class ScratchTask:
    """What a worker needs: the command, the store to fetch from and put to, the files."""

    stage: str
    cmd: str
    wdir: str
    env: Mapping[str, str]
    inputs: Mapping[str, str]
    outputs: tuple[str, ...]
    store_url: str
    store_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScratchResult:
    """How the command ended on the worker, and the digests of what it wrote and logged."""

    returncode: int
    started_at: float
    ended_at: float
    outputs: Mapping[str, str]
    log: str | None
    node: str
    error: str | None = None


def store_location(objects: ObjectStore) -> tuple[str, dict[str, Any]]:
    """The URL and client options a worker opens ``objects`` with."""
    fs = getattr(objects, "fs", None)
    options = dict(getattr(fs, "storage_options", {}) or {}) if fs is not None else {}
    return objects.url, options


def is_remote(objects: ObjectStore) -> bool:
    """Whether ``objects`` lives behind a URL other machines reach (not a local folder)."""
    from mlcd.objects.remote import FsspecObjectStore

    if not isinstance(objects, FsspecObjectStore):
        return False
    protocol = objects.fs.protocol
    names = {protocol} if isinstance(protocol, str) else set(protocol)
    return not names & {"file", "local", "memory"}


def stage_in(job: Job, objects: ObjectStore) -> dict[str, str]:
    """Make sure every input of ``job`` is in ``objects``; their digests by project path.

    An input the store lacks is put from the workspace (a source file, a params file).

    Raises:
        ObjectNotFound: an input is neither in the store nor in the workspace.
    """
    from mlcd.digest import Digest

    root = Path(job.root)
    digests: dict[str, str] = {}
    for path, known in job.inputs.items():
        if known is not None and objects.has(Digest.parse(known)):
            digests[path] = known
            continue
        local = root / path
        if local.is_dir():
            digests[path] = str(objects.put_dir(local))
        elif local.is_file():
            digests[path] = str(objects.put_file(local))
        else:
            what = f"object {known}" if known else "no digest"
            raise ObjectNotFound(
                f"stage '{job.stage}': input {path} ({what}) is neither in {objects.url} "
                f"nor in the workspace",
                hint="run the stage that makes it, or 'mlcd pull' it from the remote",
            )
    return digests


def stage_out(job: Job, objects: ObjectStore, result: ScratchResult) -> None:
    """Append the worker's log to the job's log and write its outputs into the workspace."""
    from mlcd.digest import Digest

    if result.log is not None:
        with open(job.log_path, "ab") as log:
            log.write(objects.get_bytes(Digest.parse(result.log)))
    root = Path(job.root)
    for path, digest in result.outputs.items():
        objects.get_file(Digest.parse(digest), root / path)


@contextmanager
def _store_environ(env: Mapping[str, str]) -> Iterator[None]:
    """The driver's object-store settings in this worker's environment, for one task."""
    wanted = {k: v for k, v in env.items() if k.startswith(_STORE_ENV)}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: Stores opened by this worker process, by URL, options and store settings: Ray reuses a
#: worker for many tasks, and an S3 client costs a second or so to set up.
_STORES: dict[tuple[str, str, str], ObjectStore] = {}


def _open_store(task: ScratchTask) -> ObjectStore:
    """The task's object store (call with the task's store settings in the environment)."""
    import json

    from mlcd.objects import open_object_store

    settings = sorted((k, v) for k, v in task.env.items() if k.startswith(_STORE_ENV))
    key = (
        task.store_url,
        json.dumps(dict(task.store_options), sort_keys=True, default=str),
        json.dumps(settings),
    )
    if key not in _STORES:
        options = dict(task.store_options)
        if "://" in task.store_url:  # a client of its own, made with these settings
            options.setdefault("skip_instance_cache", True)
        _STORES[key] = open_object_store(task.store_url, **options)
    return _STORES[key]


def run_in_scratch(task: ScratchTask, node: str = "") -> ScratchResult:
    """Fetch the inputs into a new scratch folder, run the command there, put back what it
    wrote and its log; the folder is removed. Runs on a worker.

    An input missing from the store ends the task before the command runs, with an
    ``error`` naming the input and its digest.
    """
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    from mlcd.digest import Digest
    from mlcd.errors import MlcdError
    from mlcd.objects.base import safe_join

    base = os.environ.get(SCRATCH_ENV) or None
    if base:
        os.makedirs(base, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"mlcd-{task.stage}-", dir=base))
    work = scratch / "project"
    work.mkdir()
    log_path = scratch / "stage.log"
    started = time.time()
    try:
        with _store_environ(task.env):
            store = _open_store(task)
            for path, digest in task.inputs.items():
                try:
                    store.get_file(Digest.parse(digest), safe_join(work, path))
                except MlcdError as exc:
                    error = (
                        f"stage '{task.stage}': input {path} (object {digest}) could not be "
                        f"fetched from {task.store_url} on {socket.gethostname()}: {exc.message}"
                    )
                    return ScratchResult(1, started, time.time(), {}, None, node, error)
            for path in task.outputs:
                safe_join(work, path).parent.mkdir(parents=True, exist_ok=True)
            cwd = safe_join(work, task.wdir) if task.wdir not in ("", ".") else work
            cwd.mkdir(parents=True, exist_ok=True)
            env = {**task.env, "MLCD_PROJECT": str(work), "PWD": str(cwd)}
            with open(log_path, "ab") as log:
                process = subprocess.run(
                    task.cmd,
                    shell=True,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            ended = time.time()
            outputs: dict[str, str] = {}
            if process.returncode == 0:
                for path in task.outputs:
                    full = work / path
                    if full.is_dir():
                        outputs[path] = str(store.put_dir(full))
                    elif full.is_file():
                        outputs[path] = str(store.put_file(full))
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(
                    f"mlcd: ran on Ray node {node or '?'} (host {socket.gethostname()}) "
                    f"in scratch folder {work}\n"
                )
            log_digest = str(store.put_file(log_path))
            return ScratchResult(process.returncode, started, ended, outputs, log_digest, node)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
