"""``mlcd import dvc``: the command; the work lives in ``mlcd.adopt``."""

from __future__ import annotations

from mlcd.cli.import_cmd import import_app

__all__ = ["import_app"]
