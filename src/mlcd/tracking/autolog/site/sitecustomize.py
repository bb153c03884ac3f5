"""mlcd's ``sitecustomize`` for stages with ``autolog: true``.

``mlcd run`` puts this folder first on ``PYTHONPATH`` of such a stage (with
``MLCD_AUTOLOG=1``), so every Python the stage starts imports this module at startup. It
first runs the ``sitecustomize`` this one shadows, if any (a virtualenv's or a
distribution's), then turns autologging on. It never stops the interpreter from starting.
"""

import os
import sys


def _chain() -> None:
    """Import the next ``sitecustomize`` on the path, the one this module hides."""
    import importlib

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    ours = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError as exc:
        if exc.name != "sitecustomize":
            sys.stderr.write(f"mlcd: the other sitecustomize failed: {exc}\n")
    except Exception as exc:  # the other module's own error: report it, as site.py would
        sys.stderr.write(f"mlcd: the other sitecustomize failed: {exc}\n")
    finally:
        # the import system expects a module under this name once this one has run
        if "sitecustomize" not in sys.modules and ours is not None:
            sys.modules["sitecustomize"] = ours


def _autolog() -> None:
    if os.environ.get("MLCD_AUTOLOG", "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    try:
        import mlcd
    except ImportError:
        sys.stderr.write("mlcd: autolog is on but this Python cannot import mlcd\n")
        return
    try:
        mlcd.autolog()
    except Exception as exc:
        sys.stderr.write(f"mlcd: autolog could not start: {exc}\n")


_chain()
_autolog()
