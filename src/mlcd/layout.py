"""Where a project's files are: ``mlcd.yaml``, the ``.mlcd/`` state folder, the project root.

Free of heavy imports (no pydantic, no YAML), so the fast paths (`mlcd status`, a no-op
`mlcd run`) can find the project without loading the configuration schema.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlcd.errors import ConfigError

CONFIG_FILE = "mlcd.yaml"
STATE_DIR = ".mlcd"


def find_root(start: str | os.PathLike[str] = ".") -> Path:
    """The nearest folder at or above ``start`` holding an ``mlcd.yaml``.

    Raises:
        ConfigError: none found.
    """
    here = Path(start).absolute()
    for folder in (here, *here.parents):
        if os.path.isfile(folder / CONFIG_FILE):
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} found in {here} or any parent folder",
        hint="run 'mlcd init' to create a project, or cd into one",
    )
