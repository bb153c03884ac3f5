"""Objects in a local folder, sharded ``ab/cdef…`` like git and DVC."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mlcd.digest import Digest, hash_file
from mlcd.errors import ObjectError
from mlcd.objects.base import ObjectStore, not_found

_READ_ONLY = 0o444


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_filesystem(folder: Path, files: list[Path]) -> None:
    """Flush the filesystem holding ``folder`` (Linux ``syncfs``); else fsync each file."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    for path in files:
        _fsync_file(path)


_FICLONE = 0x40049409  # ioctl(dest, FICLONE, source): a copy-on-write clone (Linux)


def _unique(directory: Path, prefix: str) -> Path:
    import uuid

    return directory / f"{prefix}-{uuid.uuid4().hex}"


def _reflink(source: Path, dest: Path) -> bool:
    """Clone ``source`` to ``dest`` sharing its blocks; False where the filesystem cannot."""
    import fcntl

    try:
        with open(source, "rb") as src, open(dest, "xb") as out:
            fcntl.ioctl(out.fileno(), _FICLONE, src.fileno())
        return True
    except OSError:
        dest.unlink(missing_ok=True)
        return False


def _place(source: Path, dest: Path, link: str) -> bool:
    """Make ``dest`` (a new name) hold ``source``'s bytes the ``link`` way; falls back to a
    copy across filesystems or where links are refused. True if ``dest`` IS ``source``'s
    inode (a hard link)."""
    if link == "hardlink":
        try:
            os.link(source, dest)
            return True
        except OSError:
            pass  # another filesystem, or links refused: copy
    elif link == "reflink" and _reflink(source, dest):
        return False
    shutil.copyfile(source, dest)  # in-kernel copy (sendfile) on Linux
    return False


class LocalObjectStore(ObjectStore):
    """Blobs as read-only files under ``root``; writes go through ``root/tmp`` and a rename.

    ``link`` is how files come in and go out (``cache.link``): ``copy``, ``reflink`` (a
    copy-on-write clone where the filesystem offers one) or ``hardlink`` (no copy at all: the
    project file and the object are one read-only inode, like DVC's ``cache.type: hardlink``;
    editing such a file in place would change the object, which ``mlcd verify`` reports).
    """

    def __init__(self, root: str | os.PathLike[str], link: str = "copy") -> None:
        if link not in ("copy", "reflink", "hardlink"):
            raise ObjectError(f"unknown cache.link {link!r}", hint="use copy, reflink or hardlink")
        self.link = link
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self._tmp = self.root / "tmp"
        self._made: set[str] = set()

    def path_of(self, digest: Digest) -> Path:
        """Where the blob of ``digest`` lives (whether or not it exists)."""
        return self.root / digest.hex[:2] / digest.hex[2:]

    def has(self, digest: Digest) -> bool:
        return self.path_of(digest).is_file()

    def _staging(self) -> Path:
        if "tmp" not in self._made:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._made.add("tmp")
        return self._tmp

    def _commit(self, tmp: Path, digest: Digest) -> None:
        target = self.path_of(digest)
        shard = digest.hex[:2]
        if shard not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(shard)
        os.chmod(tmp, _READ_ONLY)
        # Concurrent puts of the same digest each rename their own complete temp file;
        # whichever lands last wins, and both are identical.
        os.replace(tmp, target)

    def _put_path(self, path: Path, digest: Digest) -> None:
        tmp = self._copy_in(path, digest)
        try:
            _fsync_file(tmp)
            self._commit(tmp, digest)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _copy_in(self, path: Path, digest: Digest) -> Path:
        """Bring ``path`` into a temp name in the store (copied, cloned or linked) and check
        that what is kept hashes to ``digest``."""
        tmp = _unique(self._staging(), digest.hex[:8])
        try:
            linked = _place(path, tmp, self.link)
            # The source may have changed since it was hashed: the copy is what we keep. A
            # hard link is no copy: it is the file just hashed, and stays editable through the
            # project path whatever we check now, so it is not read twice (restores verify it).
            if not linked and hash_file(tmp).hex != digest.hex:
                raise ObjectError(
                    f"{path} changed while it was being stored",
                    hint="stop whatever is writing to it, then retry",
                )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def put_files(self, items: Sequence[tuple[Path, Digest | None]]) -> list[Digest]:
        """Copy every new file to a temp file, make the whole batch durable with one
        ``syncfs``, then rename each into place: as safe as one fsync per file (nothing
        is renamed before its bytes are on disk), without paying for thousands of them."""
        if len(items) <= 1:
            return [self.put_file(path, digest) for path, digest in items]
        from concurrent.futures import ThreadPoolExecutor

        def stage(item: tuple[Path, Digest | None]) -> tuple[Digest, Path | None]:
            path, digest = item
            if not path.is_file():
                raise ObjectError(f"cannot store {path}: not a file", hint="check the path exists")
            digest = digest or hash_file(path)
            return digest, None if self.has(digest) else self._copy_in(path, digest)

        staged: list[tuple[Digest, Path | None]] = []
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                for result in pool.map(stage, items):
                    staged.append(result)
            pending = [(digest, tmp) for digest, tmp in staged if tmp is not None]
            if pending:
                _sync_filesystem(self._staging(), [tmp for _, tmp in pending])
            for digest, copy in pending:
                self._commit(copy, digest)
        finally:
            for _, leftover in staged:
                if leftover is not None and leftover.exists():
                    leftover.unlink()
        return [digest for digest, _ in staged]

    def _put_data(self, data: bytes, digest: Digest) -> None:
        handle, name = tempfile.mkstemp(prefix=digest.hex[:8], dir=self._staging())
        tmp = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            self._commit(tmp, digest)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _read(self, digest: Digest) -> bytes:
        try:
            return self.path_of(digest).read_bytes()
        except FileNotFoundError:
            raise not_found(self, digest) from None

    def _open(self, digest: Digest) -> BinaryIO:
        try:
            return open(self.path_of(digest), "rb")
        except FileNotFoundError:
            raise not_found(self, digest) from None

    def spool(self, digest: Digest, directory: str | os.PathLike[str] | None = None) -> Path:
        """An in-kernel copy (or a clone or hard link, per ``link``), then one hash of what
        was placed on all cores (what is kept is what was checked)."""
        source = self.path_of(digest)
        if not source.is_file():
            raise not_found(self, digest)
        dest = _unique(Path(directory) if directory else Path(tempfile.gettempdir()), ".mlcd")
        try:
            _place(source, dest, self.link)
            if hash_file(dest).hex != digest.hex:
                raise self._corrupt(digest)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest

    def verify(self, digest: Digest) -> bool:
        path = self.path_of(digest)
        if not path.is_file():
            raise not_found(self, digest)
        return hash_file(path).hex == digest.hex

    def _spool_dir(self) -> Path:
        return self._staging()

    def _put_spooled(self, tmp: Path, digest: Digest) -> None:
        if tmp.parent != self._tmp:
            self._put_path(tmp, digest)
            return
        _fsync_file(tmp)
        self._commit(tmp, digest)

    def iter_digests(self) -> Iterator[Digest]:
        if not self.root.is_dir():
            return
        for shard in sorted(os.listdir(self.root)):
            if len(shard) != 2 or not (self.root / shard).is_dir():
                continue
            for rest in sorted(os.listdir(self.root / shard)):
                try:
                    yield Digest(shard + rest)
                except ObjectError:
                    continue
                except Exception:  # a stray file that is not a digest
                    continue

    def delete(self, digest: Digest) -> None:
        path = self.path_of(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def clean_staging(self) -> int:
        """Remove temp files left by crashed writers; returns how many."""
        if not self._tmp.is_dir():
            return 0
        count = 0
        for name in os.listdir(self._tmp):
            try:
                (self._tmp / name).unlink()
                count += 1
            except FileNotFoundError:
                pass
        return count
