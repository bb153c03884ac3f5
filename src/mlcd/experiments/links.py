"""Restores into a throwaway experiment workspace by hard link, guarded.

An experiment's workspace lives for one run and is then deleted, so the cached outputs of the
stages it does not run (often most of the pipeline's bytes) need not be copied into it: each
is placed as a hard link of its stored object, whatever ``cache.link`` says, and nothing is
written. The object is hashed when it is linked (as a copy would be), so a stage never reads
a corrupt object.

A hard link is the stored object itself: a stage that writes into an input it should only
read (or chmods it) would change the object. Objects are read-only files, but that does not
stop a process running as root, or one that makes the file writable first. So every linked
object is held open and, after each stage, compared with the stat it had when it was linked
(inode, size, mtime, ctime). When it moved, it is hashed again: if the bytes still match the
digest (a ``touch``, a ``chmod``) nothing happened; if not, the corrupt object is removed
from the store (the run cache then runs its producing stage again next time instead of
restoring it) and the experiment fails with a message naming the file and the stage.

Only the local object store, and only files: a folder output's files are linked one by one
(a folder of many files is copied as before, so the open files stay few). Puts (what the
stages that run write) keep the project's ``cache.link``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlcd.digest import Digest
from mlcd.objects.base import ObjectStore, not_found
from mlcd.objects.local import LocalObjectStore
from mlcd.pipeline.plan import Reporter, RunResult, Services, StageResult

#: At most this many objects are linked (each is held open); the rest are copied.
MAX_LINKED = 512
#: A folder output with more files than this is copied, not linked file by file.
MAX_DIR_FILES = 64


@dataclass
class _Linked:
    digest: Digest
    fd: int
    stat: os.stat_result
    dest: str


def _same(before: os.stat_result, after: os.stat_result) -> bool:
    keys = ("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(before, k) == getattr(after, k) for k in keys)


def _hash_fd(fd: int, size: int) -> str:
    """BLAKE3 of an open file's bytes (read through its descriptor: whatever its names)."""
    from blake3 import blake3

    hasher = blake3(max_threads=blake3.AUTO if size >= 1 << 22 else 1)
    offset = 0
    while chunk := os.pread(fd, 8 << 20, offset):
        hasher.update(chunk)
        offset += len(chunk)
    return str(hasher.hexdigest())


class LinkingObjects(LocalObjectStore):
    """The project's local object store, except that restores hard-link the stored objects
    (see the module's docstring); call :meth:`check` after each stage, :meth:`close` at the
    end."""

    def __init__(self, base: LocalObjectStore) -> None:
        super().__init__(base.root, link=base.link)
        self._lock = threading.Lock()
        self.linked: list[_Linked] = []
        #: what :meth:`check` found: one message per corrupt object
        self.problems: list[str] = []

    def get_file(self, digest: Digest, dest: str | os.PathLike[str]) -> None:
        if digest.is_dir:
            if len(self.read_manifest(digest)) > MAX_DIR_FILES:
                return LocalObjectStore(self.root, link=self.link).get_file(digest, dest)
            return super().get_file(digest, dest)  # get_dir: this get_file for each file
        with self._lock:
            full = len(self.linked) >= MAX_LINKED
        if full:
            return super().get_file(digest, dest)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = self.path_of(digest)
        tmp = dest.parent / f".mlcd-link-{os.getpid()}-{threading.get_ident()}-{dest.name}"
        try:
            os.link(source, tmp)
        except FileNotFoundError:
            raise not_found(self, digest) from None
        except OSError:  # another filesystem, or links refused: the project's way
            return super().get_file(digest, dest)
        fd = -1
        try:
            fd = os.open(tmp, os.O_RDONLY)
            before = os.fstat(fd)
            if _hash_fd(fd, before.st_size) != digest.hex:
                raise self._corrupt(digest)
            os.replace(tmp, dest)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self.linked.append(_Linked(digest, fd, before, str(dest)))
        return None

    def check(self, stage: str) -> list[str]:
        """Compare every linked object with its stat when linked; a changed one is hashed
        again, and a corrupt one removed from the store. Returns the new problems."""
        found = []
        with self._lock:
            linked = list(self.linked)
        for item in linked:
            now = os.fstat(item.fd)
            if _same(item.stat, now):
                continue
            if _hash_fd(item.fd, now.st_size) == item.digest.hex:
                # touched or chmodded: the bytes are intact; the object stays read-only
                if now.st_mode & 0o777 != item.stat.st_mode & 0o777:
                    os.fchmod(item.fd, item.stat.st_mode & 0o777)
                item.stat = os.fstat(item.fd)
                continue
            dropped = self._drop(item)
            found.append(
                f"'{os.path.relpath(item.dest)}' was written to while stage '{stage}' ran"
                f" (or before): it is a hard link of the stored object {item.digest.hex[:12]},"
                f" which no longer matches its digest; the object was "
                f"{'removed from the store' if dropped else 'already gone from the store'}"
                " (the stage that made it will run again). A stage must not write into a"
                " file it reads: write a new file instead"
            )
        with self._lock:
            self.problems.extend(found)
        return found

    def _drop(self, item: _Linked) -> bool:
        """Remove the object from the store if its path still names the corrupt inode."""
        path = self.path_of(item.digest)
        try:
            if os.stat(path).st_ino != item.stat.st_ino:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            linked, self.linked = self.linked, []
        for item in linked:
            try:
                os.close(item.fd)
            except OSError:
                pass


def blame(services: Services, result: RunResult, blamed: dict[str, list[str]]) -> RunResult:
    """The run's result with each blamed stage failed, also in the metadata store (the run
    and the stage marked failed, the message kept as the stage's error)."""
    if not blamed or result.run_id is None:
        return result
    from mlcd.store import runs

    run_id = result.run_id

    def work(conn: Any) -> None:
        for stage, found in blamed.items():
            runs.record_stage(conn, run_id, stage, outcome="failed", error="; ".join(found))
        runs.end_run(conn, run_id, "failed")

    services.store.transact(work)
    stages = [
        replace(s, outcome="failed", error="; ".join(blamed[s.stage])) if s.stage in blamed else s
        for s in result.stages
    ]
    return replace(result, stages=stages)


def linking(objects: ObjectStore) -> LinkingObjects | None:
    """A :class:`LinkingObjects` over ``objects`` when it is a local folder store, else None
    (then the experiment restores the way ``cache.link`` says)."""
    if type(objects) is not LocalObjectStore:
        return None
    return LinkingObjects(objects)


class GuardedReporter(Reporter):
    """Passes every event on; after each stage, checks the linked objects."""

    def __init__(self, inner: Reporter, objects: LinkingObjects) -> None:
        self.inner, self.objects = inner, objects
        #: stage → the problems found right after it finished
        self.blamed: dict[str, list[str]] = {}

    def planned(self, stages: list[str]) -> None:
        self.inner.planned(stages)

    def started(self, stage: str, action: str) -> None:
        self.inner.started(stage, action)

    def waiting(self, stage: str, path: str, holder: str) -> None:
        self.inner.waiting(stage, path, holder)

    def finished(self, result: StageResult) -> None:
        found = self.objects.check(result.stage)
        if found:
            self.blamed.setdefault(result.stage, []).extend(found)
            result = replace(result, outcome="failed", error="; ".join(found))
        self.inner.finished(result)

    def __getattr__(self, name: str) -> Any:  # any event a newer Reporter adds
        return getattr(self.inner, name)
