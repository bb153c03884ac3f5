"""Digest: the BLAKE3 identity shared by objects, the run cache, lineage and the registry."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import UsageError

if TYPE_CHECKING:
    import mmap

ALGORITHM = "blake3"
HEX_LENGTH = 64
DIR_SUFFIX = ".dir"
#: Files at least this big are hashed with all cores (BLAKE3's tree mode).
_THREADED_FROM = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
#: Large files are hashed through memory maps of this size (a multiple of the page size).
_WINDOW = 8 * 1024 * 1024


@dataclass(frozen=True, order=True)
class Digest:
    """A BLAKE3 digest; ``is_dir`` marks the digest of a directory manifest."""

    hex: str
    is_dir: bool = False

    def __post_init__(self) -> None:
        if len(self.hex) != HEX_LENGTH or any(c not in "0123456789abcdef" for c in self.hex):
            raise UsageError(
                f"not a BLAKE3 digest: {self.hex!r}",
                hint="a digest is 64 lowercase hex characters, optionally followed by '.dir'",
            )

    def __str__(self) -> str:
        return self.hex + (DIR_SUFFIX if self.is_dir else "")

    @property
    def short(self) -> str:
        """The first 12 hex characters, for display."""
        return self.hex[:12]

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``HEX`` or ``HEX.dir`` (an optional ``blake3:`` prefix is accepted)."""
        text = text.strip().removeprefix(f"{ALGORITHM}:")
        if text.endswith(DIR_SUFFIX):
            return cls(text[: -len(DIR_SUFFIX)], is_dir=True)
        return cls(text)

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": ALGORITHM, "hex": self.hex, "is_dir": self.is_dir}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Digest:
        return cls(str(data["hex"]), bool(data.get("is_dir", False)))


def hash_bytes(data: bytes) -> Digest:
    """Digest of a byte string."""
    from blake3 import blake3

    return Digest(blake3(data).hexdigest())


def map_window(fd: int, length: int, offset: int) -> mmap.mmap:
    """A read-only map of ``length`` bytes at ``offset`` of ``fd``, its page tables filled at
    once where the system can (Linux ``MAP_POPULATE``) instead of one page fault per 4 KiB
    page while it is hashed."""
    import mmap

    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate and hasattr(mmap, "MAP_SHARED"):
        return mmap.mmap(
            fd, length, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ, offset=offset
        )
    return mmap.mmap(fd, length, offset=offset, access=mmap.ACCESS_READ)


def hash_file(path: str | os.PathLike[str]) -> Digest:
    """Digest of a file's content; large files are hashed on all cores (BLAKE3's tree mode)
    through memory-mapped windows of ``_WINDOW`` bytes: as fast as mapping the whole file,
    and the resident set stays at one window (a whole-file map would count it all)."""
    from blake3 import blake3

    path = Path(path)
    size = path.stat().st_size
    if size >= _THREADED_FROM:
        hasher = blake3(max_threads=blake3.AUTO)
        with open(path, "rb") as handle:
            for offset in range(0, size, _WINDOW):
                length = min(_WINDOW, size - offset)
                with map_window(handle.fileno(), length, offset) as window:
                    hasher.update(window)
        return Digest(hasher.hexdigest())
    hasher = blake3()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return Digest(hasher.hexdigest())
