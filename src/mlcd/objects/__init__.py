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


def copy_objects(
    source: ObjectStore,
    target: ObjectStore,
    digests: Iterable[Digest],
    progress: Callable[[int, int], None] | None = None,
) -> list[Digest]:
    """Copy what ``target`` lacks of ``digests`` (manifests expanded), verifying each blob.

    Returns the digests copied. A corrupt source blob raises CorruptObject and copies nothing
    bad: bytes are verified before they are written to ``target``.
    """
    wanted: list[Digest] = []
    for digest in digests:
        if digest.is_dir:
            wanted.extend(e.digest for e in source.read_manifest(digest))
            wanted.append(Digest(digest.hex))
        else:
            wanted.append(digest)
    unique = list(dict.fromkeys(wanted))
    todo = [d for d in unique if not target.has(d)]
    copied = []
    for index, digest in enumerate(todo, 1):
        # Chunk by chunk through a verified temp file where the target stages its writes:
        # memory stays bounded whatever the blob's size, and nothing unverified is stored.
        tmp = source.spool(digest, target._spool_dir())
        try:
            target._put_spooled(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)
        copied.append(digest)
        if progress:
            progress(index, len(todo))
    return copied
