"""Objects in a local folder, sharded ``ab/cdef…`` like git and DVC."""

from __future__ import annotations

import errno
import fcntl
import itertools
import mmap
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from mlcd.digest import Digest, hash_file, map_window
from mlcd.errors import ObjectError
from mlcd.objects.base import ObjectStore, not_found

_READ_ONLY = 0o444
#: Files smaller than this come in with one read, one hash of that buffer and one write.
_SMALL = 8 * 1024 * 1024
#: Larger files are copied in-kernel window by window; each window is hashed once written.
_WINDOW = 16 * 1024 * 1024
#: Threads that bring a batch of files in (file creation and copies wait on the disk; on
#: 2 cores and tmpfs, 2, 4 and 8 threads took the same time for 2,000 files).
_PUT_THREADS = 8


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path | str) -> None:
    """Make a directory's entries (a rename into it) durable; best effort where directories
    cannot be opened or fsynced (some network and non-POSIX filesystems)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sync_filesystem(folder: Path, files: Iterable[Path], directories: Iterable[Path] = ()) -> None:
    """Flush the filesystem holding ``folder`` (Linux ``syncfs``); else fsync each file and
    each directory (their entries: renames into them)."""
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
    for directory in dict.fromkeys(directories):
        _fsync_dir(directory)


_FICLONE = 0x40049409  # ioctl(dest, FICLONE, source): a copy-on-write clone (Linux)


_TOKEN: list[str] = []
_COUNTER = itertools.count()


def _unique(directory: Path, prefix: str) -> Path:
    """A new name in ``directory``, unique across processes (pid and a random token of this
    process) and threads (a counter), without a ``getrandom`` call per file."""
    if not _TOKEN:
        _TOKEN.append(os.urandom(6).hex())
    return directory / f"{prefix}-{os.getpid()}-{_TOKEN[0]}-{next(_COUNTER)}"


def _reflink(source: Path, dest: Path) -> bool:
    """Clone ``source`` to ``dest`` sharing its blocks; False where the filesystem cannot."""
    try:
        with open(source, "rb") as src, open(dest, "xb") as out:
            fcntl.ioctl(out.fileno(), _FICLONE, src.fileno())
        return True
    except OSError:
        dest.unlink(missing_ok=True)
        return False


_LIBC: list[Any] = []


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range out now (``sync_file_range``, Linux), so the
    final fsync finds most of it on disk already; a no-op elsewhere. Not a durability step."""
    if not _LIBC:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            function = libc.sync_file_range
            function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _LIBC.append(function)
        except (OSError, AttributeError):
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE


def _copy_range(source: int, dest: int, offset: int, length: int) -> None:
    """Copy ``length`` bytes at ``offset`` between two descriptors, in the kernel where it
    can (``copy_file_range``), else through a buffer."""
    done = 0
    while done < length:
        try:
            count = os.copy_file_range(source, dest, length - done, offset + done, offset + done)
        except OSError:  # another filesystem type, an old kernel: copy through memory
            count = 0
            while done < length:
                chunk = os.pread(source, min(8 * 1024 * 1024, length - done), offset + done)
                if not chunk:
                    break
                _write_all(dest, chunk, offset + done)
                done += len(chunk)
        if count == 0 and done < length:
            raise _changed(None)
        done += count


def _write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[written:]
        if offset is not None:
            offset += written


def _not_a_file(path: Path) -> ObjectError:
    return ObjectError(f"cannot store {path}: not a file", hint="check the path exists")


def _changed(path: Path | None) -> ObjectError:
    return ObjectError(
        f"{path or 'a file'} changed while it was being stored",
        hint="stop whatever is writing to it, then retry",
    )


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )


_BUFFERS = threading.local()


def _read_small(source: int, size: int) -> memoryview:
    """The whole file (``size`` bytes by its stat), read into this thread's reused buffer:
    no new allocation (and page faults) per file. The buffer is a page-aligned anonymous map,
    so that it can be written out with ``O_DIRECT``. One byte more is asked for, so that a
    file that grew since its stat is seen.

    Raises:
        ObjectError: the file is longer than its stat said (it is being written).
    """
    buffer: mmap.mmap | None = getattr(_BUFFERS, "buffer", None)
    if buffer is None or len(buffer) < size + 1:
        # (the old map is unmapped once the last view of it is gone)
        buffer = _BUFFERS.buffer = mmap.mmap(-1, max(size + 1, 1024 * 1024))
    view = memoryview(buffer)
    done = 0
    while done <= size:
        count = os.readv(source, [view[done : size + 1]])
        if count == 0:
            break
        done += count
    if done > size:
        raise _changed(None)
    return view[:done]


def _open_new(tmp: Path, direct: bool, access: int = os.O_WRONLY) -> tuple[int, bool]:
    """Create ``tmp`` read-only (an object's final mode: no chmod later; the descriptor still
    writes), with ``O_DIRECT`` if ``direct`` and the filesystem takes it. Returns the
    descriptor and whether it is direct."""
    flags = access | os.O_CREAT | os.O_EXCL
    if direct:
        try:
            return os.open(tmp, flags | os.O_DIRECT, _READ_ONLY), True
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            # refused (tmpfs before Linux 6.6, some network filesystems); a kernel may have
            # created the file before refusing the flag
            tmp.unlink(missing_ok=True)
    return os.open(tmp, flags, _READ_ONLY), False


def _through_cache(out: int) -> None:
    """Clear ``O_DIRECT`` on ``out``: the next writes go through the page cache."""
    fcntl.fcntl(out, fcntl.F_SETFL, fcntl.fcntl(out, fcntl.F_GETFL) & ~os.O_DIRECT)


def _write_direct(out: int, view: memoryview, offset: int) -> None:
    """Write ``view`` (from a page-aligned buffer) at ``offset`` (a multiple of
    ``_DIRECT_ALIGN``) to a descriptor opened with ``O_DIRECT``: the whole blocks directly,
    a last partial block through the page cache (direct writes take whole blocks only).
    Where the filesystem refuses the alignment, this and later writes go through the cache
    (what was written already is rewritten at the same offset)."""
    aligned = len(view) - len(view) % _DIRECT_ALIGN
    if aligned:
        try:
            _write_all(out, view[:aligned], offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _through_cache(out)
            _write_all(out, view[:aligned], offset)
    if aligned < len(view):
        _through_cache(out)
        _write_all(out, view[aligned:], offset + aligned)


def _write_new(tmp: Path, data: memoryview) -> None:
    """Write ``data`` (from :func:`_read_small`'s aligned buffer) to a new file ``tmp``.
    From ``_DIRECT_MIN`` bytes up the bytes go to the disk directly (``O_DIRECT``, see
    ``_DIRECT_MIN``); smaller files go through the page cache, their writeback started at
    once so that the batch's ``syncfs`` finds them on their way."""
    out, direct = _open_new(tmp, _DIRECT_WRITES and len(data) >= _DIRECT_MIN)
    try:
        if direct:
            _write_direct(out, data, 0)
        else:
            _write_all(out, data)
            _start_writeback(out, 0, len(data))
    finally:
        os.close(out)


#: O_DIRECT writes: offsets, lengths and buffer addresses are multiples of this.
_DIRECT_ALIGN = 4096
#: Windows being written to the disk while the next is read and hashed.
_DIRECT_INFLIGHT = 2
#: New objects are written with O_DIRECT where the system has it (else: large files are
#: copied in-kernel, small ones through the page cache).
_DIRECT_WRITES = hasattr(os, "O_DIRECT")
#: Small files from this size up are written with O_DIRECT too. Every new object is made
#: durable before the command ends, so its bytes reach the disk in the timed window anyway;
#: through the page cache they cost a second memory copy, new cache pages and writeback
#: work, and one ``syncfs`` then waits for all of them at the end. Direct writes go out while
#: other threads read and hash the next files. Below this size a direct write's wait on the
#: device costs more than the copy it saves.
_DIRECT_MIN = 64 * 1024


def _ingest_large(source: int, size: int, tmp: Path) -> Digest:
    """Read window by window into memory, hash each window there (BLAKE3 on all cores) and
    write that same buffer to the temp file with ``O_DIRECT``, the writes of earlier windows
    going on in helper threads while the next is read and hashed: one read of the source, and
    what is kept is exactly what was hashed.

    Direct writes skip the page cache: the object is made durable right after (so its bytes
    must reach the disk before the command ends anyway), and a copy through the page cache
    costs a second memory copy, page allocation and writeback work for pages nobody reads
    next. Where ``O_DIRECT`` is refused (tmpfs, some network filesystems) the copy is made
    in-kernel (``copy_file_range``) and hashed from the copy's page cache."""
    # read-write: the in-kernel copy hashes what it wrote through a map of the file
    out, direct = _open_new(tmp, _DIRECT_WRITES, access=os.O_RDWR)
    try:
        if direct:
            return _ingest_large_direct(source, size, out)
        return _ingest_large_in_kernel(source, size, out)
    finally:
        os.close(out)


def _ingest_large_direct(source: int, size: int, out: int) -> Digest:
    from concurrent.futures import Future, ThreadPoolExecutor

    from blake3 import blake3

    hasher = blake3(max_threads=blake3.AUTO)
    # page-aligned buffers (anonymous maps), one per window in flight plus the one being read
    buffers = [mmap.mmap(-1, _WINDOW) for _ in range(_DIRECT_INFLIGHT + 1)]
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=_DIRECT_INFLIGHT) as writers:
        for index, offset in enumerate(range(0, size, _WINDOW)):
            if len(pending) > _DIRECT_INFLIGHT - 1:
                pending.pop(0).result()  # its buffer is the one read into next
            view = memoryview(buffers[index % len(buffers)])
            length = min(_WINDOW, size - offset)
            done = 0
            while done < length:
                count = os.preadv(source, [view[done:length]], offset + done)
                if count == 0:
                    raise _changed(None)  # shorter than its stat said
                done += count
            hasher.update(view[:length])
            aligned = length - length % _DIRECT_ALIGN
            if aligned:
                pending.append(writers.submit(_write_direct, out, view[:aligned], offset))
            if aligned < length:  # the file's last, partial block: through the cache
                for future in pending:
                    future.result()
                pending.clear()
                _write_direct(out, view[aligned:length], offset + aligned)
        for future in pending:
            future.result()
    if os.pread(source, 1, size):
        raise _changed(None)  # longer than its stat said
    # (the buffers are unmapped when the last view of them goes, with this frame)
    return Digest(hasher.hexdigest())


def _ingest_large_in_kernel(source: int, size: int, out: int) -> Digest:
    """Copy in-kernel window by window into ``out`` (a new file open for reading and
    writing), the next window copying in a helper thread while this one is hashed (BLAKE3 on
    all cores) from the page cache of the copy and starts its way to the disk: one read of
    the source, and what is kept is what was hashed."""
    from concurrent.futures import ThreadPoolExecutor

    from blake3 import blake3

    hasher = blake3(max_threads=blake3.AUTO)
    os.ftruncate(out, size)
    with ThreadPoolExecutor(max_workers=1) as copier:
        pending = copier.submit(_copy_range, source, out, 0, min(_WINDOW, size))
        for offset in range(0, size, _WINDOW):
            length = min(_WINDOW, size - offset)
            pending.result()
            following = offset + _WINDOW
            if following < size:
                length_next = min(_WINDOW, size - following)
                pending = copier.submit(_copy_range, source, out, following, length_next)
            _start_writeback(out, offset, length)
            with map_window(out, length, offset) as window:
                hasher.update(window)
    return Digest(hasher.hexdigest())


_Item = TypeVar("_Item")
_Staged = tuple[Digest, "Path | None", bool]


def _run_threads(
    stage: Callable[[_Item], _Staged], items: Sequence[_Item], threads: int
) -> list[_Staged]:
    """``stage`` of every item, in order, on ``threads`` threads that take the next item
    themselves (no future, lock and condition per item, as a pool's ``map`` makes: for
    thousands of small files that bookkeeping held the GIL longer than the work). On an
    error the other threads stop taking items, the temp files of the items staged are
    removed, and the first error is raised."""
    results: list[_Staged | None] = [None] * len(items)
    errors: list[BaseException] = []
    taken = itertools.count()
    lock = threading.Lock()

    def work() -> None:
        while not errors:
            with lock:
                index = next(taken)
            if index >= len(items):
                return
            try:
                results[index] = stage(items[index])
            except BaseException as exc:  # reported by the caller's thread
                errors.append(exc)
                return

    workers = [threading.Thread(target=work) for _ in range(max(1, min(threads, len(items))))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        for result in results:
            if result is not None and result[1] is not None:
                result[1].unlink(missing_ok=True)
        raise errors[0]
    return [result for result in results if result is not None]


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

    def _shard(self, digest: Digest) -> None:
        """Create the shard folder of ``digest`` once per process."""
        shard = digest.hex[:2]
        if shard not in self._made:
            os.makedirs(self.root / shard, exist_ok=True)
            self._made.add(shard)

    def _commit(self, tmp: Path, digest: Digest, read_only: bool = False) -> None:
        """Rename a durable temp file to its object name (``read_only``: created so). The
        rename itself is made durable by the caller (``_fsync_dir`` of the shard, or one
        ``syncfs`` for a batch) before anything that names the object is written."""
        self._shard(digest)
        if not read_only:
            os.chmod(tmp, _READ_ONLY)
        # Concurrent puts of the same digest each rename their own complete temp file;
        # whichever lands last wins, and both are identical.
        os.replace(tmp, self.path_of(digest))

    def _commit_durably(self, tmp: Path, digest: Digest, read_only: bool = False) -> None:
        """fsync the temp file, rename it into place, fsync the shard: once this returns, the
        object survives a power cut whole, and a crash before leaves no partial object."""
        _fsync_file(tmp)
        self._commit(tmp, digest, read_only)
        _fsync_dir(self.path_of(digest).parent)

    def _put_path(self, path: Path, digest: Digest) -> None:
        tmp = self._copy_in(path, digest)
        try:
            self._commit_durably(tmp, digest)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _ingest(
        self, path: Path, expected: os.stat_result | None = None
    ) -> tuple[Digest, Path | None]:
        """Bring a file whose digest is not known yet into a temp file in the store and hash
        what was written, in one pass over the source (a reflink is hashed after cloning).
        A small file is read into memory and hashed first: if the store has it already,
        nothing is written. The temp path is None when the store has the content already;
        the temp file is created read-only.

        Args:
            expected: the stat the caller listed the file with (its size goes into a
                manifest): the file must still have it.

        Raises:
            ObjectError: the file changed while it was read (its stat moved), or since the
                caller listed it.
        """
        tmp = _unique(self._staging(), "new")
        try:
            # Non-blocking: a FIFO must not hang the open (it is refused just below).
            source = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                before = os.fstat(source)
                if not stat.S_ISREG(before.st_mode):
                    raise _not_a_file(path)
                if expected is not None and not _same_file(expected, before):
                    raise _changed(path)
                data = None
                if self.link == "reflink" and _reflink(path, tmp):
                    os.chmod(tmp, _READ_ONLY)
                    digest = hash_file(tmp)
                elif before.st_size < _SMALL:
                    from blake3 import blake3

                    data = _read_small(source, before.st_size)
                    digest = Digest(blake3(data).hexdigest())
                else:
                    digest = _ingest_large(source, before.st_size, tmp)
            finally:
                os.close(source)
            if not _same_file(before, os.stat(path)):
                raise _changed(path)
            if self.has(digest):  # stored already: nothing to keep
                if data is None:  # (a small file's temp file was never written)
                    tmp.unlink()
                return digest, None
            if data is not None:
                _write_new(tmp, data)  # the bytes hashed are the bytes kept
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest, tmp

    def put_file(self, path: str | os.PathLike[str], digest: Digest | None = None) -> Digest:
        """Store a file. Without a known ``digest`` (copy and reflink modes) the file is read
        once: copied and hashed in one pass, then made durable and renamed."""
        path = Path(path)
        if digest is not None or self.link == "hardlink":
            return super().put_file(path, digest)
        if not path.is_file():
            raise ObjectError(f"cannot store {path}: not a file", hint="check the path exists")
        digest, tmp = self._ingest(path)
        if tmp is None:
            return digest
        try:
            self._commit_durably(tmp, digest, read_only=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

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
        """Store a batch of files, as durably as one fsync per file and per rename, with two
        ``syncfs`` instead: every new file goes to a temp file, one ``syncfs`` makes all
        their bytes durable, then each is renamed into place, and a second ``syncfs`` makes
        the renames durable before this returns. So no object is ever under its name before
        its bytes are on disk (a crash or power cut leaves whole objects and temp files
        only), and whatever the caller writes next that names the objects (a manifest, a
        pointer file, a lock) finds them durable."""
        return self._put_listed([(path, digest, None) for path, digest in items])

    def _put_listed(
        self, items: Sequence[tuple[Path, Digest | None, os.stat_result | None]]
    ) -> list[Digest]:
        if len(items) <= 1 and all(st is None for _, _, st in items):
            return [self.put_file(path, digest) for path, digest, _ in items]

        def stage(
            item: tuple[Path, Digest | None, os.stat_result | None],
        ) -> tuple[Digest, Path | None, bool]:
            path, digest, listed = item
            if digest is None and self.link != "hardlink":
                # One pass: copied and hashed together (small files: not written at all when
                # stored already). A missing or special file fails its open or its stat check.
                try:
                    digest, tmp = self._ingest(path, listed)
                except FileNotFoundError:
                    raise _not_a_file(path) from None
                read_only = True
            else:
                if not path.is_file():
                    raise _not_a_file(path)
                digest = digest or hash_file(path)
                tmp = None if self.has(digest) else self._copy_in(path, digest)
                read_only = False
            if tmp is not None:
                self._shard(digest)  # made here, in parallel, not at the renames
            return digest, tmp, read_only

        def commit(item: tuple[Digest, Path | None, bool]) -> None:
            digest, tmp, read_only = item
            if tmp is not None:
                self._commit(tmp, digest, read_only)

        staged = _run_threads(stage, items, _PUT_THREADS)
        try:
            pending = [item for item in staged if item[1] is not None]
            shards = [self.root / digest.hex[:2] for digest, _, _ in pending]
            if pending:
                # 1. every temp file's bytes durable, before any rename
                _sync_filesystem(self._staging(), [tmp for _, tmp, _ in pending if tmp])
                # 2. the renames, one thread: a rename from tmp/ into a shard takes the
                # filesystem's cross-directory rename lock, so threads would only queue
                while pending:
                    commit(pending[-1])
                    pending.pop()
                # 3. the renames durable, before anything naming the objects is written
                _sync_filesystem(self.root, (), shards)
        except BaseException:
            for _, leftover, _ in staged:  # those not renamed yet
                if leftover is not None:
                    leftover.unlink(missing_ok=True)
            raise
        return [digest for digest, _, _ in staged]

    def _put_data(self, data: bytes, digest: Digest) -> None:
        handle, name = tempfile.mkstemp(prefix=digest.hex[:8], dir=self._staging())
        tmp = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            self._commit(tmp, digest)
            _fsync_dir(self.path_of(digest).parent)
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

    def verified_path(self, digest: Digest) -> tuple[Path, os.stat_result]:
        """The stored file of ``digest``, hashed now, with its stat (for ``unchanged``): to be
        read in place, e.g. by an upload, without a temp copy.

        Raises:
            ObjectNotFound: not stored.
            CorruptObject: it does not hash to ``digest``.
        """
        path = self.path_of(digest)
        try:
            before = os.stat(path)
        except FileNotFoundError:
            raise not_found(self, digest) from None
        if hash_file(path).hex != digest.hex:
            raise self._corrupt(digest)
        return path, before

    @staticmethod
    def unchanged(path: Path, before: os.stat_result) -> bool:
        """Whether ``path`` still has the stat it had (a hard-linked object can be edited)."""
        try:
            return _same_file(before, os.stat(path))
        except FileNotFoundError:
            return False

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
        self._commit_durably(tmp, digest)

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
