"""Where an HTML report gets plotly.js: inside the page, or one shared copy beside it.

``inline`` (the default) makes a page that works alone (about 4.8 MB); ``directory`` writes
``plotly.min.js`` once into the report's folder, so a folder of reports shares one copy. Either
way plotly.js comes from the installed ``plotly`` package: no CDN, works offline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlcd.errors import UsageError

MODES = ("inline", "directory")
FILE = "plotly.min.js"


def check(mode: str) -> str:
    """Return ``mode`` if it is known.

    Raises:
        UsageError: an unknown mode.
    """
    if mode not in MODES:
        raise UsageError(f"unknown --plotly {mode!r}", hint="use inline or directory")
    return mode


def include(mode: str) -> bool | str:
    """The ``include_plotlyjs`` value for a page's first ``figure.to_html``."""
    return True if check(mode) == "inline" else FILE


def script(mode: str) -> str:
    """A ``<script>`` element that loads plotly.js for a whole page."""
    if check(mode) == "directory":
        return f'<script src="{FILE}"></script>'
    from plotly.offline import get_plotlyjs

    return f"<script>{get_plotlyjs()}</script>"


def place(mode: str, folder: str | Path) -> None:
    """With ``directory``, put the shared ``plotly.min.js`` into ``folder`` (once)."""
    if check(mode) != "directory":
        return
    import plotly

    source = Path(plotly.__file__).parent / "package_data" / FILE
    target = Path(folder) / FILE
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{FILE}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
