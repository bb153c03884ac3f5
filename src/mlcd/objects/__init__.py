"""Content-addressed blobs: the port, its implementations, and the scheme table."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mlcd.digest import Digest
from mlcd.errors import ConfigError
from mlcd.objects.base import ManifestEntry, ObjectStore
from mlcd.objects.local import LocalObjectStore
from mlcd.objects.memory import MemoryObjectStore

__all__ = [
    "LocalObjectStore",
    "ManifestEntry",
    "MemoryObjectStore",
    "ObjectStore",
    "copy_objects",
    "open_object_store",
]


def _fsspec(url: str, **options: Any) -> ObjectStore:
    from mlcd.objects.remote import FsspecObjectStore

    return FsspecObjectStore(url, **options)


#: URL scheme -> (factory, the extra that brings its driver or None)
SCHEMES: dict[str, tuple[Callable[..., ObjectStore], str | None]] = {
    "file": (
        lambda url, link="copy", **_: LocalObjectStore(url.removeprefix("file://"), link),
        None,
    ),
    "mem": (lambda url, **_: MemoryObjectStore(url.removeprefix("mem://")), None),
    "memory": (_fsspec, None),
    "s3": (_fsspec, "s3"),
    "gs": (_fsspec, "gcs"),
    "gcs": (_fsspec, "gcs"),
    "az": (_fsspec, "azure"),
    "abfs": (_fsspec, "azure"),
}


def open_object_store(
    url: str, root: str | os.PathLike[str] = ".", link: str = "copy", **options: Any
) -> ObjectStore:
    """The store for ``url``: a path (relative to ``root``) or a URL with a known scheme.
    ``link`` (copy, reflink or hardlink: ``cache.link``) applies to a local folder.

    Raises:
        ConfigError: the scheme is unknown, or its driver is not installed.
    """
    if "://" not in url:
        path = Path(url)
        return LocalObjectStore(path if path.is_absolute() else Path(root) / path, link=link)
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unknown object store scheme '{scheme}://' in {url!r}",
            hint=f"use a folder path or one of: {', '.join(sorted(SCHEMES))}",
        )
    factory, extra = SCHEMES[scheme]
    if scheme == "file":
        options["link"] = link
    try:
        return factory(url, **options)
    except ImportError as exc:
        raise ConfigError(
            f"the {scheme}:// object store needs an extra package ({exc.name or exc})",
            hint=f"pip install 'mlcd[{extra or scheme}]'",
        ) from exc


#: Blobs in flight at once in ``copy_objects`` (each streams: memory grows with this, not
#: with blob sizes).
COPY_THREADS = 4


def copy_objects(
    source: ObjectStore,
    target: ObjectStore,
    digests: Iterable[Digest],
    progress: Callable[[int, int], None] | None = None,
    threads: int = COPY_THREADS,
) -> list[Digest]:
    """Copy what ``target`` lacks of ``digests`` (manifests expanded), verifying each blob,
    ``threads`` blobs at a time; a folder's manifest goes only after all its files.

    Returns the digests copied. A corrupt source blob raises CorruptObject and copies nothing
    bad: bytes are verified before they are written to ``target`` (the first error stops the
    copies not yet started and is raised once those in flight end).
    """
    wanted: list[Digest] = []
    manifests: list[Digest] = []
    for digest in digests:
        if digest.is_dir:
            wanted.extend(e.digest for e in source.read_manifest(digest))
            manifests.append(Digest(digest.hex))
        else:
            wanted.append(digest)
    files = [d for d in dict.fromkeys(wanted) if not target.has(d)]
    listed = set(files)
    tops = [d for d in dict.fromkeys(manifests) if d not in listed and not target.has(d)]
    total = len(files) + len(tops)
    copied: list[Digest] = []
    for batch in (files, tops):  # every file lands before the manifest that names it
        _copy_batch(source, target, batch, threads, copied, total, progress)
    return copied


def _copy_batch(
    source: ObjectStore,
    target: ObjectStore,
    batch: list[Digest],
    threads: int,
    copied: list[Digest],
    total: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    if not batch:
        return
    if threads <= 1 or len(batch) == 1:
        for digest in batch:
            _copy_one(source, target, digest)
            copied.append(digest)
            if progress:
                progress(len(copied), total)
        return
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=min(threads, len(batch))) as pool:
        futures = {pool.submit(_copy_one, source, target, d): d for d in batch}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    wait(pending)
                    raise future.exception()  # type: ignore[misc]
                copied.append(futures[future])
                if progress:
                    progress(len(copied), total)


def _copy_one(source: ObjectStore, target: ObjectStore, digest: Digest) -> None:
    """One blob, streamed: verified where it is when the source is a local folder and the
    target uploads (no temp copy), else chunk by chunk through a verified temp file where the
    target stages its writes. Memory stays bounded whatever the blob's size."""
    if isinstance(source, LocalObjectStore) and target._spool_dir() is None:
        path, before = source.verified_path(digest)
        target._put_path(path, digest)
        if not source.unchanged(path, before):  # edited in place while it was uploaded
            target.delete(digest)
            raise source._corrupt(digest)
        return
    tmp = source.spool(digest, target._spool_dir())
    try:
        target._put_spooled(tmp, digest)
    finally:
        tmp.unlink(missing_ok=True)
