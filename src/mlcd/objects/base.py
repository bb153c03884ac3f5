"""The object-store port: content-addressed blobs and directory manifests.

Concrete stores implement six primitives (``has``, ``_put_path``, ``_put_data``, ``_read``,
``iter_digests``, ``delete``); everything else — directories, verified reads, copies between
stores — is built here on top of them, once. Stores that can stream a blob (a file, an S3
object) also override ``_open``: then blobs move in chunks of ``STREAM_CHUNK`` through a
verified temp file, and memory stays bounded whatever the blob's size.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mlcd.digest import Digest, hash_bytes, hash_file
from mlcd.errors import CorruptObject, ObjectError, ObjectNotFound, UnsafePath
from mlcd.layout import path_problem

_PUT_THREADS = 8
#: Blobs are streamed in chunks of this size (copies, verification, materialisation).
STREAM_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a directory manifest: its path relative to the directory."""

    path: str
    digest: Digest
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest.hex, "size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestEntry:
        return cls(str(data["path"]), Digest(str(data["digest"])), int(data["size"]))


def encode_manifest(entries: Iterable[ManifestEntry]) -> bytes:
    """Canonical bytes of a manifest: sorted by path, compact JSON."""
    ordered = sorted(entries, key=lambda e: e.path)
    return json.dumps([e.to_dict() for e in ordered], separators=(",", ":")).encode()


def iter_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative posix path, path)`` of every file below ``root``, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            yield full.relative_to(root).as_posix(), full


def safe_join(root: Path, relative: str) -> Path:
    """Join a manifest path to ``root``, refusing paths that are unsafe or leave it.

    Raises:
        UnsafePath: an absolute path, ``..``, a backslash, a drive, a NUL, ``.git``, or a path
            that resolves outside ``root``.
    """
    problem = path_problem(relative)
    target = (root / relative).resolve() if problem is None else root
    if problem is None and not target.is_relative_to(root.resolve()):
        problem = "leaves the directory"
    if problem is not None:
        raise _unsafe_entry(relative, problem, str(root))
    return target


def _unsafe_entry(name: object, problem: str, where: str) -> UnsafePath:
    return UnsafePath(
        f"directory manifest {where}: entry {name!r} {problem}; refused, nothing was written",
        hint="mlcd never writes such a manifest: it was crafted by hand. Delete it from the "
        "remote, and restore mlcd.lock or the pointer that names it from git",
    )


class ObjectStore(ABC):
    """A content-addressed store of blobs keyed by BLAKE3 digest."""

    url: str

    # ------------------------------------------------------------ primitives
    @abstractmethod
    def has(self, digest: Digest) -> bool:
        """Whether the blob for ``digest`` is stored (directory manifests included)."""

    @abstractmethod
    def _put_path(self, path: Path, digest: Digest) -> None:
        """Store the file at ``path`` whose content hashes to ``digest``, atomically."""

    @abstractmethod
    def _put_data(self, data: bytes, digest: Digest) -> None:
        """Store ``data`` whose hash is ``digest``, atomically."""

    @abstractmethod
    def _read(self, digest: Digest) -> bytes:
        """The stored bytes, unverified. Raises ObjectNotFound."""

    @abstractmethod
    def iter_digests(self) -> Iterator[Digest]:
        """Every stored blob digest (manifests appear as plain digests)."""

    @abstractmethod
    def delete(self, digest: Digest) -> None:
        """Remove a blob if present."""

    # ------------------------------------------------------------ files
    def put_file(self, path: str | os.PathLike[str], digest: Digest | None = None) -> Digest:
        """Store a file; ``digest`` may be passed when already known (from a stat cache)."""
        path = Path(path)
        if not path.is_file():
            raise ObjectError(f"cannot store {path}: not a file", hint="check the path exists")
        digest = digest or hash_file(path)
        if not self.has(digest):
            self._put_path(path, digest)
        return digest

    def put_files(self, items: Sequence[tuple[Path, Digest | None]]) -> list[Digest]:
        """Store many files (``(path, known digest or None)``); returns their digests in order.

        Stores that can batch their durability work (one sync for many files) override this.
        """
        if len(items) <= 1:
            return [self.put_file(path, digest) for path, digest in items]
        # Hashing and I/O release the GIL: threads overlap disk waits with hashing.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=_PUT_THREADS) as pool:
            return list(pool.map(lambda item: self.put_file(*item), items))

    def _put_listed(
        self, items: Sequence[tuple[Path, Digest | None, os.stat_result | None]]
    ) -> list[Digest]:
        """``put_files`` of files listed with a stat; stores that read each file anyway
        refuse one whose stat moved since (its size is in the manifest)."""
        return self.put_files([(path, digest) for path, digest, _ in items])

    def put_bytes(self, data: bytes) -> Digest:
        """Store a byte string."""
        digest = hash_bytes(data)
        if not self.has(digest):
            self._put_data(data, digest)
        return digest

    def get_bytes(self, digest: Digest) -> bytes:
        """The bytes of ``digest``, verified.

        Raises:
            ObjectNotFound: not stored.
            CorruptObject: the stored bytes do not hash to ``digest``.
        """
        data = self._read(Digest(digest.hex))
        if hash_bytes(data).hex != digest.hex:
            raise self._corrupt(digest)
        return data

    def get_file(self, digest: Digest, dest: str | os.PathLike[str]) -> None:
        """Write the verified blob to ``dest`` atomically (a file or, for ``.dir``, a folder)."""
        if digest.is_dir:
            self.get_dir(digest, dest)
            return
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.spool(digest, dest.parent)
        try:
            if os.stat(tmp).st_nlink == 1:  # a hard link to a stored object stays read-only
                os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _open(self, digest: Digest) -> BinaryIO:
        """A readable stream of the stored bytes, unverified (stores that can stream override
        this; the default holds the blob in memory). Raises ObjectNotFound."""
        return io.BytesIO(self._read(digest))

    def spool(self, digest: Digest, directory: str | os.PathLike[str] | None = None) -> Path:
        """Copy the blob to a new temp file in ``directory`` chunk by chunk, hashing as it
        streams; the caller owns the file. Memory stays at one chunk.

        Raises:
            ObjectNotFound: not stored.
            CorruptObject: the bytes do not hash to ``digest`` (the temp file is removed).
        """
        from blake3 import blake3

        hasher = blake3()
        handle, name = tempfile.mkstemp(prefix=".mlcd-", dir=directory)
        try:
            with os.fdopen(handle, "wb") as out, self._open(Digest(digest.hex)) as source:
                while chunk := source.read(STREAM_CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != digest.hex:
                raise self._corrupt(digest)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    def _spool_dir(self) -> Path | None:
        """Where copies into this store stage their temp files (None: the system's)."""
        return None

    def _put_spooled(self, tmp: Path, digest: Digest) -> None:
        """Store a verified temp file made by ``spool`` in ``_spool_dir()``; the caller
        removes whatever is left of it."""
        self._put_path(tmp, digest)

    def verify(self, digest: Digest) -> bool:
        """True if the blob is stored and matches its digest (False if corrupt), read in
        chunks."""
        from blake3 import blake3

        hasher = blake3()
        with self._open(Digest(digest.hex)) as source:
            while chunk := source.read(STREAM_CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest() == digest.hex

    def _corrupt(self, digest: Digest) -> CorruptObject:
        return CorruptObject(
            f"object {digest.hex} in {self.url} is corrupt: its bytes no longer match its digest",
            hint="run 'mlcd gc --verify' to drop it, then 'mlcd pull' or re-run the stage that made it",
        )

    # ------------------------------------------------------------ directories
    def put_dir(
        self, path: str | os.PathLike[str], known: dict[str, Digest] | None = None
    ) -> Digest:
        """Store every file under ``path`` and its manifest; returns the ``.dir`` digest.

        ``known`` maps relative paths to digests already computed (from a stat cache).
        """
        return self.put_tree(path, known=known)[0]

    def put_tree(
        self,
        path: str | os.PathLike[str],
        files: Sequence[tuple[str, os.stat_result]] | None = None,
        known: dict[str, Digest] | None = None,
    ) -> tuple[Digest, list[ManifestEntry]]:
        """``put_dir`` that also returns the manifest's entries (sorted by path).

        ``files`` is the folder's listing when the caller has one already (``(relative
        posix path, stat)``, as ``statcache.walk_files`` gives): it is not walked and
        stat'ed again, and a file whose stat moved since is refused (its size is in the
        manifest).
        """
        root = Path(path)
        if not root.is_dir():
            raise ObjectError(f"cannot store {root}: not a directory")
        known = known or {}
        listed: list[tuple[str, Path, os.stat_result]]
        if files is None:
            listed = [(relative, full, full.stat()) for relative, full in iter_files(root)]
            checked = False
        else:
            listed = [(relative, root / relative, st) for relative, st in files]
            checked = True
        digests = self._put_listed(
            [(full, known.get(rel), st if checked else None) for rel, full, st in listed]
        )
        entries = [
            ManifestEntry(relative, digest, st.st_size)
            for (relative, _, st), digest in zip(listed, digests, strict=True)
        ]
        entries.sort(key=lambda entry: entry.path)
        manifest = self.put_bytes(encode_manifest(entries))
        return Digest(manifest.hex, is_dir=True), entries

    def read_manifest(self, digest: Digest) -> list[ManifestEntry]:
        """The entries of a directory manifest (verified)."""
        data = self.get_bytes(Digest(digest.hex))
        try:
            entries = [ManifestEntry.from_dict(item) for item in json.loads(data)]
        except (ValueError, KeyError, TypeError) as exc:
            raise ObjectError(f"object {digest.hex} is not a directory manifest") from exc
        for entry in entries:
            problem = path_problem(entry.path)
            if problem is not None:
                raise _unsafe_entry(entry.path, problem, digest.hex)
        return entries

    def get_dir(self, digest: Digest, dest: str | os.PathLike[str]) -> None:
        """Materialise a directory: built beside ``dest``, then swapped in whole."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".mlcd-dir-", dir=dest.parent))
        try:
            for entry in self.read_manifest(digest):
                self.get_file(entry.digest, safe_join(staging, entry.path))
            if dest.exists():
                old = dest.with_name(f".mlcd-old-{dest.name}-{os.getpid()}")
                os.replace(dest, old)
                os.replace(staging, dest)
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            else:
                os.replace(staging, dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def expand(self, digests: Iterable[Digest]) -> set[str]:
        """Hex of every blob reachable from ``digests`` (manifests and their entries)."""
        reachable: set[str] = set()
        for digest in digests:
            reachable.add(digest.hex)
            if digest.is_dir and self.has(digest):
                try:
                    reachable.update(e.digest.hex for e in self.read_manifest(digest))
                except (ObjectError, UnsafePath):
                    continue
        return reachable

    def missing(self, digests: Iterable[Digest]) -> list[Digest]:
        """Those of ``digests`` (manifests expanded) that this store does not have."""
        return [d for d in digests if not self.has(d)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def not_found(store: ObjectStore, digest: Digest) -> ObjectNotFound:
    """The error for a digest that is not stored."""
    return ObjectNotFound(
        f"object {digest} is not in {store.url}",
        hint="run 'mlcd pull' to fetch it from the remote, or re-run the stage that makes it",
    )
