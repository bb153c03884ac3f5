"""StatCache: file digests remembered by (inode, size, mtime, ctime), so unchanged files are
never read twice.

The cache is a small stdlib ``sqlite3`` file in ``.mlcd/`` (not the metadata store: opening
SQLAlchemy would cost more than the whole no-op check). An entry is trusted only when the
file's mtime is older than the moment it was hashed by a safety margin, the "racy git" rule:
a file written in the same clock tick as it was hashed could change again without its stat
changing, so such entries are re-hashed once on the next look.
"""

from __future__ import annotations

import os
import sqlite3
import stat as stat_mod
import threading
import time
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _quote
from operator import itemgetter
from pathlib import Path

from mlcd.digest import hash_bytes, hash_file

#: Entries whose mtime is this close to (or after) the moment they were hashed are re-hashed.
RACY_NS = 50_000_000
#: Hash in threads once at least this many bytes are waiting (BLAKE3 and reads drop the GIL).
_THREADED_BYTES = 16 * 1024 * 1024
_HASH_THREADS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stat (
    path TEXT PRIMARY KEY,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    recorded_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folder (
    path TEXT PRIMARY KEY,
    listing TEXT NOT NULL,
    newest_ns INTEGER NOT NULL,
    recorded_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
"""

Signature = tuple[int, int, int, int]  # ino, size, mtime_ns, ctime_ns


def signature(st: os.stat_result) -> Signature:
    """The part of a stat result that changes whenever the content may have."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def manifest_bytes(entries: Iterable[tuple[str, str, int]]) -> bytes:
    """Canonical manifest of ``(relative path, hex, size)`` entries.

    Byte for byte what ``mlcd.objects.base.encode_manifest`` writes (compact JSON sorted by
    path), without building a ``Digest`` per file: that validation would be most of the cost
    on a 2,000-file folder.
    """
    ordered = sorted(entries, key=itemgetter(0))
    return (
        "["
        + ",".join(f'{{"path":{_quote(p)},"digest":"{d}","size":{s}}}' for p, d, s in ordered)
        + "]"
    ).encode()


def listing_key(files: list[tuple[str, os.stat_result]]) -> str:
    """A digest of a folder's listing: every name with its stat signature, in walk order."""
    text = repr(
        [(name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for name, st in files]
    )
    return hash_bytes(text.encode()).hex


def walk_files(root: str) -> list[tuple[str, os.stat_result]]:
    """``(relative posix path, stat)`` of every file below ``root``, as ``os.walk`` sees them."""
    found: list[tuple[str, os.stat_result]] = []
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    # os.walk (which put_dir uses) lists symlinked folders but never enters them
                    if not entry.is_symlink():
                        stack.append((prefix + entry.name + "/", entry.path))
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:  # a dangling symlink
                    continue
                if stat_mod.S_ISREG(st.st_mode):
                    found.append((prefix + entry.name, st))
    return found


def _writable(path: Path) -> bool:
    """Whether the cache file can be written (or created in the nearest existing folder)."""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


class StatCache:
    """Digests of files by path, re-hashing only files whose stat changed.

    Args:
        db_path: the SQLite file (created on first use).
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        self._conn: sqlite3.Connection | None = None
        self._pending: dict[str, tuple[Signature, int, str]] = {}
        self._pending_folders: dict[str, tuple[str, int, int, str]] = {}
        self._lock = threading.RLock()
        self.hashed_bytes = 0
        self.hashed_files = 0

    # ------------------------------------------------------------ storage
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if not _writable(self.db_path):
                # a read-only checkout: hash everything, remember it for this process only
                self._conn = sqlite3.connect(":memory:", isolation_level=None)
                self._conn.executescript(_SCHEMA)
                return self._conn
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError:
                # It is only a cache: a damaged file is dropped and rebuilt.
                self.db_path.unlink(missing_ok=True)
                self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, timeout=60, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 60000")
        row = conn.execute("PRAGMA journal_mode").fetchone()
        if row and str(row[0]).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    def _lookup_one(self, key: str) -> tuple[Signature, int, str] | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        row = (
            self._connect()
            .execute(
                "SELECT ino, size, mtime_ns, ctime_ns, recorded_ns, digest FROM stat WHERE path = ?",
                (key,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return (row[0], row[1], row[2], row[3]), row[4], row[5]

    def _lookup_prefix(self, prefix: str) -> dict[str, tuple[Signature, int, str]]:
        # '/' + 1 == '0': every key starting with "prefix/" sorts in [prefix/, prefix0)
        rows = (
            self._connect()
            .execute(
                "SELECT path, ino, size, mtime_ns, ctime_ns, recorded_ns, digest FROM stat "
                "WHERE path >= ? AND path < ?",
                (prefix + "/", prefix + "0"),
            )
            .fetchall()
        )
        found = {r[0]: ((r[1], r[2], r[3], r[4]), r[5], r[6]) for r in rows}
        found.update({k: v for k, v in self._pending.items() if k.startswith(prefix + "/")})
        return found

    @staticmethod
    def _trusted(entry: tuple[Signature, int, str] | None, sig: Signature) -> str | None:
        if entry is None:
            return None
        old_sig, recorded_ns, digest = entry
        if old_sig != sig or sig[2] >= recorded_ns - RACY_NS:
            return None
        return digest

    def record(self, path: str | os.PathLike[str], digest_hex: str) -> None:
        """Remember the digest of a file whose content is known (e.g. just restored)."""
        key = os.path.abspath(path)
        st = os.stat(key)
        with self._lock:
            self._pending[key] = (signature(st), time.time_ns(), digest_hex)

    def record_listed(
        self, folder: str | os.PathLike[str], entries: Iterable[tuple[str, os.stat_result, str]]
    ) -> None:
        """Remember the digests of files below ``folder`` under the stat they were listed
        and read with (``(relative path, stat, digest hex)``; the object store checks a
        file's stat is the listed one before and after it reads it): no second ``stat``,
        and a file changed since gets another stat, so it is hashed again next time."""
        base = os.path.abspath(folder)
        recorded = time.time_ns()
        with self._lock:
            for relative, st, digest_hex in entries:
                self._pending[base + "/" + relative] = (signature(st), recorded, digest_hex)

    def flush(self) -> None:
        """Write new entries (one transaction); a no-op when nothing was hashed."""
        with self._lock:
            if not self._pending and not self._pending_folders:
                return
            rows = [
                (path, *sig, recorded, digest)
                for path, (sig, recorded, digest) in self._pending.items()
            ]
            folders = [(path, *values) for path, values in self._pending_folders.items()]
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.executemany("INSERT OR REPLACE INTO folder VALUES (?, ?, ?, ?, ?)", folders)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._pending.clear()
            self._pending_folders.clear()

    def close(self) -> None:
        """Flush and close the database."""
        with self._lock:
            try:
                self.flush()
            finally:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    # ------------------------------------------------------------ hashing
    def _hash_many(self, todo: list[tuple[str, os.stat_result]]) -> dict[str, str]:
        """Hash files (absolute paths), in threads when there is enough to read."""
        total = sum(st.st_size for _, st in todo)

        def one(item: tuple[str, os.stat_result]) -> tuple[str, str]:
            return item[0], hash_file(item[0]).hex

        if len(todo) > 1 and total >= _THREADED_BYTES:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
                results = dict(pool.map(one, todo))
        else:
            results = dict(map(one, todo))
        now_ns = time.time_ns()
        with self._lock:
            self.hashed_files += len(todo)
            self.hashed_bytes += total
            for path, st in todo:
                self._pending[path] = (signature(st), now_ns, results[path])
        return results

    def known(self, path: str | os.PathLike[str], st: os.stat_result) -> str | None:
        """The digest of a file if its stat is unchanged since it was hashed; never reads it
        (whoever reads it anyway, e.g. the object store, hands the digest to ``record``)."""
        with self._lock:
            return self._trusted(self._lookup_one(os.path.abspath(path)), signature(st))

    def known_below(
        self, path: str | os.PathLike[str], files: list[tuple[str, os.stat_result]]
    ) -> dict[str, str]:
        """``relative path -> digest`` of the ``files`` below a folder whose stat is
        unchanged since they were hashed (one lookup for the folder); never reads them."""
        base = os.path.abspath(path)
        with self._lock:
            found = self._lookup_prefix(base) if files else {}
            pairs = (
                (rel, self._trusted(found.get(base + "/" + rel), signature(st)))
                for rel, st in files
            )
            return {rel: digest for rel, digest in pairs if digest is not None}

    def file_digest(self, path: str | os.PathLike[str], st: os.stat_result | None = None) -> str:
        """The hex digest of a file, read only if its stat changed since it was last hashed."""
        key = os.path.abspath(path)
        st = st or os.stat(key)
        with self._lock:
            known = self._trusted(self._lookup_one(key), signature(st))
        if known is not None:
            return known
        return self._hash_many([(key, st)])[key]

    def dir_entries(
        self,
        path: str | os.PathLike[str],
        files: list[tuple[str, os.stat_result]] | None = None,
    ) -> list[tuple[str, str, int]]:
        """``(relative path, hex, size)`` of every file below a folder, hashing only changes."""
        base = os.path.abspath(path)
        files = walk_files(base) if files is None else files
        with self._lock:
            known = self._lookup_prefix(base) if files else {}
        entries: list[tuple[str, str, int]] = []
        todo: list[tuple[str, os.stat_result]] = []
        waiting: list[tuple[str, str, int]] = []
        for relative, st in files:
            full = base + "/" + relative
            digest = self._trusted(known.get(full), signature(st))
            if digest is None:
                todo.append((full, st))
                waiting.append((relative, full, st.st_size))
            else:
                entries.append((relative, digest, st.st_size))
        if todo:
            hashed = self._hash_many(todo)
            entries.extend((relative, hashed[full], size) for relative, full, size in waiting)
        return entries

    def dir_digest(self, path: str | os.PathLike[str]) -> str:
        """The ``HEX.dir`` digest of a folder, equal to what ``ObjectStore.put_dir`` returns.

        A folder whose listing (names and stat signatures) is unchanged since its digest was
        taken is answered from that record, without looking its files up one by one.
        """
        base = os.path.abspath(path)
        files = walk_files(base)
        key = listing_key(files)
        newest = max((st.st_mtime_ns for _, st in files), default=0)
        with self._lock:
            row = self._pending_folders.get(base)
            if row is None:
                found = (
                    self._connect()
                    .execute(
                        "SELECT listing, newest_ns, recorded_ns, digest FROM folder WHERE path = ?",
                        (base,),
                    )
                    .fetchone()
                )
                row = tuple(found) if found else None
        if row is not None and row[0] == key and row[1] < row[2] - RACY_NS:
            return str(row[3])
        digest = hash_bytes(manifest_bytes(self.dir_entries(base, files))).hex + ".dir"
        with self._lock:
            self._pending_folders[base] = (key, newest, time.time_ns(), digest)
        return digest

    def path_digest(self, path: str | os.PathLike[str]) -> str | None:
        """``HEX`` for a file, ``HEX.dir`` for a folder, None when nothing is there."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat_mod.S_ISDIR(st.st_mode):
            return self.dir_digest(path)
        return self.file_digest(path, st)

    def __enter__(self) -> StatCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
