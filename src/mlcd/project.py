"""The composition root: ``mlcd.yaml`` -> concrete stores -> the services above them.

Only this module (and the CLI, through it) builds backends from configuration; every
service receives ready-made objects, so tests can hand in their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.config import Config, load_config
from mlcd.errors import ConfigError
from mlcd.layout import STATE_DIR, find_root

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.store import Store


@dataclass
class Project:
    """A project on disk, with its configuration and lazily opened stores."""

    root: Path
    config: Config
    _closers: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, start: str | os.PathLike[str] = ".", *, local_store: bool = False) -> Project:
        """Find and load the project containing ``start``.

        With ``local_store``, a folder with no ``mlcd.yaml`` up the tree but a ``.mlcd/mlcd.db``
        (what ``mlcd.start_run()`` leaves when no project is found) opens on the embedded
        defaults, so its runs can be listed and compared.

        Raises:
            ConfigError: no project found (and no local store, when allowed).
        """
        try:
            root = find_root(start)
        except ConfigError:
            here = Path(start).absolute()
            if local_store and (here / STATE_DIR / "mlcd.db").is_file():
                return cls(root=here, config=Config())
            raise
        return cls(root=root, config=load_config(root))

    @property
    def state_dir(self) -> Path:
        """``.mlcd/``: the embedded state (database, objects, logs, caches)."""
        return self.root / STATE_DIR

    @cached_property
    def store(self) -> Store:
        """The metadata store (migrated on first open)."""
        from mlcd.store import Store

        store = Store(self.config.store, root=self.root)
        self._closers.append(store.dispose)
        return store

    @cached_property
    def objects(self) -> ObjectStore:
        """The content-addressed object store."""
        from mlcd.objects import open_object_store

        return open_object_store(self.config.artifacts, root=self.root, link=self.config.cache.link)

    def remote(self, name: str | None = None) -> ObjectStore:
        """The object store of a remote declared in ``mlcd.yaml`` (default remote if no name).

        Raises:
            ConfigError: no such remote, or none declared.
        """
        from mlcd.objects import open_object_store

        remotes = self.config.remotes
        name = (
            name
            or self.config.default_remote
            or (next(iter(remotes)) if len(remotes) == 1 else None)
        )
        if name is None or name not in remotes:
            raise ConfigError(
                f"no remote {'named ' + repr(name) if name else 'chosen'}"
                f" (declared: {', '.join(remotes) or 'none'})",
                hint="declare one under 'remotes:' in mlcd.yaml, or pass --remote NAME",
            )
        remote = remotes[name]
        return open_object_store(remote.url, root=self.root, **remote.options)

    def close(self) -> None:
        """Release pooled connections."""
        for closer in self._closers:
            closer()
        self._closers.clear()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
