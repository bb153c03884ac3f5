"""DVC's MD5-addressed objects, read from its cache or a remote, verified, moved into mlcd.

DVC 3 keeps a file's bytes at ``files/md5/ab/cdef…`` under its cache (``.dvc/cache`` or the
configured ``cache.dir``) and under each remote; DVC 2 kept them at ``ab/cdef…``. Both are
read. A folder is a ``<md5>.dir`` object: a JSON list of ``{"md5", "relpath"}`` whose own
MD5 (of ``json.dumps(list, sort_keys=True)``) is the folder's hash. Every file is checked
against its MD5 before its bytes enter mlcd's BLAKE3 store; a mismatch refuses the import
and names the file and both hashes. DVC 2's ``md5-dos2unix`` (text files hashed with CRLF
turned to LF) is accepted where the lock says the hash is not plain ``md5``.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd.digest import Digest
from mlcd.errors import ConfigError, CorruptObject, ObjectError
from mlcd.layout import path_problem
from mlcd.objects import ObjectStore
from mlcd.objects.base import ManifestEntry, encode_manifest, iter_files

_CHUNK = 8 * 1024 * 1024
_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
#: Folders DVC never hashes inside an out.
_DVC_SKIP = {".git", ".dvc"}


def md5_of_file(path: Path, dos2unix: bool = False) -> str:
    """The MD5 of a file's bytes (with ``dos2unix``, of a text file with CRLF made LF)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        if dos2unix:
            data = handle.read()
            if b"\x00" not in data[:8192]:
                data = data.replace(b"\r\n", b"\n")
            digest.update(data)
        else:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def dir_md5(entries: list[dict[str, str]]) -> str:
    """DVC's hash of a folder listing (``<md5>.dir``)."""
    ordered = sorted(
        ({"md5": e["md5"], "relpath": e["relpath"]} for e in entries), key=lambda e: e["relpath"]
    )
    raw = json.dumps(ordered, sort_keys=True).encode("utf-8")
    return hashlib.md5(raw, usedforsecurity=False).hexdigest() + ".dir"


def _files(path: Path) -> Iterator[tuple[str, Path]]:
    for relative, full in iter_files(path):
        if not (_DVC_SKIP & set(relative.split("/")[:-1])) and not relative.endswith(".dvcignore"):
            yield relative, full


@dataclass(frozen=True)
class DvcObject:
    """Where one MD5's bytes are: a local file, or a remote URL read through fsspec."""

    md5: str
    local: Path | None = None
    url: str | None = None


class DvcObjects:
    """DVC's objects, looked up in the local cache and (optionally) one remote.

    Args:
        root: the DVC project (the folder holding ``.dvc/``).
        remote: the name of a remote in ``.dvc/config`` to read from instead of the cache.
    """

    def __init__(self, root: Path, remote: str | None = None) -> None:
        self.root = root
        self.config = read_dvc_config(root)
        self.cache_dir = self._cache_dir()
        self.remote_url: str | None = None
        self.remote_options: dict[str, Any] = {}
        self._fs: Any = None
        if remote is not None:
            self.remote_url, self.remote_options = self._remote(remote)

    def _cache_dir(self) -> Path:
        configured = self.config.get("cache", {}).get("dir")
        if configured:
            path = Path(os.path.expanduser(configured))
            return path if path.is_absolute() else (self.root / ".dvc" / path).resolve()
        return self.root / ".dvc" / "cache"

    def _remote(self, name: str) -> tuple[str, dict[str, Any]]:
        remotes = {k: v for k, v in self.config.items() if k.startswith("remote:")}
        section = remotes.get(f"remote:{name}")
        if section is None or "url" not in section:
            declared = ", ".join(k.split(":", 1)[1] for k in remotes) or "none"
            raise ConfigError(
                f"no DVC remote named '{name}' in .dvc/config (declared: {declared})",
                hint="pass one of the declared names to --remote, or leave it out to read the "
                "local DVC cache",
            )
        url = section["url"]
        options = {k: v for k, v in section.items() if k != "url"}
        if "://" not in url and not Path(url).is_absolute():
            url = str((self.root / ".dvc" / url).resolve())
        return url, options

    def _candidates(self, md5: str) -> list[str]:
        head, tail = md5[:2], md5[2:]
        return [f"files/md5/{head}/{tail}", f"{head}/{tail}"]

    def locate(self, md5: str) -> DvcObject | None:
        """Where ``md5`` is (the remote when one was chosen, else the cache), or None."""
        if not _MD5.match(md5):
            raise ObjectError(f"not a DVC MD5: {md5!r}")
        if self.remote_url is None:
            for candidate in self._candidates(md5):
                path = self.cache_dir / candidate
                if path.is_file():
                    return DvcObject(md5, local=path)
            return None
        if "://" not in self.remote_url:
            for candidate in self._candidates(md5):
                path = Path(self.remote_url) / candidate
                if path.is_file():
                    return DvcObject(md5, local=path)
            return None
        fs = self._filesystem()
        for candidate in self._candidates(md5):
            url = f"{self.remote_url.rstrip('/')}/{candidate}"
            if fs.exists(url):
                return DvcObject(md5, url=url)
        return None

    def _filesystem(self) -> Any:
        if self._fs is None:
            import fsspec

            assert self.remote_url is not None
            protocol = self.remote_url.split("://", 1)[0]
            self._fs = fsspec.filesystem(protocol, **self.remote_options)
        return self._fs

    def fetch(self, obj: DvcObject, scratch: Path) -> Path:
        """A local file holding the object's bytes (downloaded into ``scratch`` if remote)."""
        if obj.local is not None:
            return obj.local
        assert obj.url is not None
        target = Path(tempfile.mkstemp(prefix="dvc-", dir=scratch)[1])
        with self._filesystem().open(obj.url, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        return target


def read_dvc_config(root: Path) -> dict[str, dict[str, str]]:
    """``.dvc/config`` and ``.dvc/config.local`` merged: ``{section: {key: value}}``.

    Sections ``'remote "name"'`` become ``remote:name``.
    """
    merged: dict[str, dict[str, str]] = {}
    for name in ("config", "config.local"):
        path = root / ".dvc" / name
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise ConfigError(
                f".dvc/{name} is not a valid DVC config: {exc}", hint="fix it with 'dvc config'"
            ) from exc
        for section in parser.sections():
            match = re.fullmatch(r"""'?\s*remote\s+"([^"]+)"\s*'?""", section)
            key = f"remote:{match.group(1)}" if match else section.strip("'\" ")
            merged.setdefault(key, {}).update(dict(parser[section]))
    return merged


class Importer:
    """MD5 objects into mlcd's store: each verified once, remembered as ``md5 -> digest``.

    Args:
        objects: mlcd's object store.
        source: DVC's objects.
        scratch: a folder for downloads (removed by the caller).
    """

    def __init__(self, objects: ObjectStore, source: DvcObjects, scratch: Path) -> None:
        self.objects = objects
        self.source = source
        self.scratch = scratch
        self.known: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.files = 0
        self.bytes = 0

    def from_cache(self, md5: str, where: str, legacy: bool = False) -> str | None:
        """Import ``md5`` (file or folder) from DVC's cache/remote; None when it is not there.

        Raises:
            CorruptObject: a file whose bytes do not have its MD5.
        """
        if md5 in self.known:
            return self.known[md5]
        if md5.endswith(".dir"):
            return self._dir(md5, where, legacy)
        obj = self.source.locate(md5)
        if obj is None:
            return None
        digest = self._put(obj, where, legacy)
        self.known[md5] = digest
        return digest

    def _put(self, obj: DvcObject, where: str, legacy: bool) -> str:
        path = self.source.fetch(obj, self.scratch)
        try:
            actual = md5_of_file(path)
            if actual != obj.md5 and not (legacy and md5_of_file(path, True) == obj.md5):
                raise CorruptObject(
                    f"{where}: the DVC object {obj.local or obj.url} should have MD5 {obj.md5} "
                    f"but has {actual}; refused, nothing was imported",
                    hint="the DVC cache is damaged: delete that file and run 'dvc fetch' (or "
                    "import with --remote NAME to read the remote's copy)",
                )
            size = path.stat().st_size
            digest = str(self.objects.put_file(path))
        finally:
            if obj.local is None:
                path.unlink(missing_ok=True)
        self.sizes[digest] = size
        self.files += 1
        self.bytes += size
        return digest

    def _dir(self, md5: str, where: str, legacy: bool) -> str | None:
        obj = self.source.locate(md5)
        if obj is None:
            return None
        path = self.source.fetch(obj, self.scratch)
        try:
            raw = path.read_bytes()
        finally:
            if obj.local is None:
                path.unlink(missing_ok=True)
        try:
            listing = json.loads(raw)
            members = [(str(e["relpath"]), str(e["md5"])) for e in listing]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObject(
                f"{where}: the DVC folder listing {md5} is not valid; refused",
                hint="delete it from the DVC cache and run 'dvc fetch'",
            ) from exc
        if (
            hashlib.md5(raw, usedforsecurity=False).hexdigest() + ".dir" != md5
            and dir_md5([{"md5": m, "relpath": r} for r, m in members]) != md5
        ):
            raise CorruptObject(
                f"{where}: the DVC folder listing should have MD5 {md5}; refused",
                hint="delete it from the DVC cache and run 'dvc fetch'",
            )
        entries = []
        for relative, member in members:
            problem = path_problem(relative)
            if problem is not None:
                raise CorruptObject(
                    f"{where}: the DVC folder listing {md5} names {relative!r}, which {problem}; "
                    "refused, nothing was written",
                    hint="the cache or remote is not trustworthy: fetch from a clean copy",
                )
            digest = self.from_cache(member, f"{where}/{relative}", legacy)
            if digest is None:
                return None
            entries.append(ManifestEntry(relative, Digest.parse(digest), self.sizes[digest]))
        manifest = self.objects.put_bytes(encode_manifest(entries))
        result = str(Digest(manifest.hex, is_dir=True))
        self.sizes[result] = sum(e.size for e in entries)
        self.known[md5] = result
        return result

    def from_workspace(self, md5: str, path: Path, legacy: bool = False) -> str | None:
        """Store the workspace's ``path`` if DVC would hash it to ``md5``; else None."""
        if md5 in self.known:
            return self.known[md5]
        if path.is_dir():
            listing = []
            entries = []
            for relative, full in _files(path):
                member = md5_of_file(full, dos2unix=legacy)
                listing.append({"md5": member, "relpath": relative})
                size = full.stat().st_size
                entries.append(ManifestEntry(relative, self.objects.put_file(full), size))
            if dir_md5(listing) != md5:
                return None
            manifest = self.objects.put_bytes(encode_manifest(entries))
            result = str(Digest(manifest.hex, is_dir=True))
            self.sizes[result] = sum(e.size for e in entries)
        elif path.is_file():
            if md5_of_file(path) != md5 and not (legacy and md5_of_file(path, True) == md5):
                return None
            result = str(self.objects.put_file(path))
            self.sizes[result] = path.stat().st_size
        else:
            return None
        self.known[md5] = result
        return result
