"""Objects in a dict: a real store for tests and ephemeral use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mlcd.digest import Digest
from mlcd.objects.base import ObjectStore, not_found


class MemoryObjectStore(ObjectStore):
    """Blobs kept in process memory."""

    def __init__(self, name: str = "memory") -> None:
        self.url = f"mem://{name}"
        self._blobs: dict[str, bytes] = {}

    def has(self, digest: Digest) -> bool:
        return digest.hex in self._blobs

    def _put_path(self, path: Path, digest: Digest) -> None:
        self._blobs[digest.hex] = path.read_bytes()

    def _put_data(self, data: bytes, digest: Digest) -> None:
        self._blobs[digest.hex] = bytes(data)

    def _read(self, digest: Digest) -> bytes:
        try:
            return self._blobs[digest.hex]
        except KeyError:
            raise not_found(self, digest) from None

    def iter_digests(self) -> Iterator[Digest]:
        for key in sorted(self._blobs):
            yield Digest(key)

    def delete(self, digest: Digest) -> None:
        self._blobs.pop(digest.hex, None)
