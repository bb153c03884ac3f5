"""Objects on any fsspec filesystem (``s3://``, ``gs://``, ``memory://``, ...)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from mlcd.digest import Digest, hash_file
from mlcd.errors import ObjectError
from mlcd.objects.base import STREAM_CHUNK, ObjectStore, not_found


class FsspecObjectStore(ObjectStore):
    """Blobs under ``url`` on an fsspec filesystem, sharded like the local store.

    Object stores such as S3 make a single PUT atomic, so no temp-and-rename is needed;
    on filesystems with rename the blob is written beside its target and moved in place.
    """

    def __init__(self, url: str, **options: Any) -> None:
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.url, **options)
        except ImportError as exc:
            scheme = url.split("://", 1)[0]
            raise ObjectError(
                f"no filesystem driver for {scheme}:// ({exc})",
                hint=f"pip install 'mlcd[{scheme}]'",
            ) from exc
        self.base = self.base.rstrip("/")

    def _key(self, digest: Digest) -> str:
        return f"{self.base}/{digest.hex[:2]}/{digest.hex[2:]}"

    def has(self, digest: Digest) -> bool:
        return bool(self.fs.exists(self._key(digest)))

    def _put_path(self, path: Path, digest: Digest) -> None:
        key = self._key(digest)
        self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(str(path), key, **self._upload_options())

    def _upload_options(self) -> dict[str, Any]:
        """s3fs uploads large files in parts of 50 MiB by default, ten in flight: two parts of
        ``STREAM_CHUNK`` in flight keep an upload at 16 MiB whatever the size, so that several
        uploads at once (``copy_objects`` runs ``COPY_THREADS``) stay within ~150 MB."""
        return {"chunksize": STREAM_CHUNK, "max_concurrency": 2} if self._is_s3() else {}

    def _download_options(self) -> dict[str, Any]:
        """One GET streamed in 64 KiB reads (s3fs would split a large blob into ten ranged
        GETs in flight): parallelism comes from several blobs at once in ``copy_objects``."""
        return {"max_concurrency": 1} if self._is_s3() else {}

    def _is_s3(self) -> bool:
        protocol = self.fs.protocol
        names = {protocol} if isinstance(protocol, str) else set(protocol)
        return bool(names & {"s3", "s3a"})

    def spool(self, digest: Digest, directory: str | os.PathLike[str] | None = None) -> Path:
        """One streamed GET into a temp file (the driver writes it as it arrives: memory stays
        at its buffer), then the file is hashed; a bad blob leaves nothing behind. Ranged reads
        would cost a request per chunk (and, on servers that slice a whole blob per range,
        quadratic time).

        Raises:
            ObjectNotFound: not stored.
            CorruptObject: the bytes do not hash to ``digest``.
        """
        handle, name = tempfile.mkstemp(prefix=".mlcd-", dir=directory)
        os.close(handle)
        tmp = Path(name)
        try:
            try:
                self.fs.get_file(self._key(digest), name, **self._download_options())
            except FileNotFoundError:
                raise not_found(self, digest) from None
            if hash_file(tmp).hex != digest.hex:
                raise self._corrupt(digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _put_data(self, data: bytes, digest: Digest) -> None:
        key = self._key(digest)
        self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(key, data)

    def _read(self, digest: Digest) -> bytes:
        try:
            return bytes(self.fs.cat_file(self._key(digest)))
        except FileNotFoundError:
            raise not_found(self, digest) from None

    def _open(self, digest: Digest) -> BinaryIO:
        """A buffered stream: ranged reads of ``STREAM_CHUNK`` on S3, never the whole blob."""
        try:
            return cast(BinaryIO, self.fs.open(self._key(digest), "rb", block_size=STREAM_CHUNK))
        except FileNotFoundError:
            raise not_found(self, digest) from None

    def iter_digests(self) -> Iterator[Digest]:
        if not self.fs.exists(self.base):
            return
        for path in sorted(self.fs.find(self.base)):
            parts = path.rstrip("/").split("/")
            if len(parts) >= 2 and len(parts[-2]) == 2:
                try:
                    yield Digest(parts[-2] + parts[-1])
                except Exception:
                    continue

    def delete(self, digest: Digest) -> None:
        try:
            self.fs.rm_file(self._key(digest))
        except FileNotFoundError:
            pass
