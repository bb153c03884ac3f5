"""Reading a table file the way every step reads one: Parquet (file or folder), CSV, JSON lines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlcd.errors import UsageError


def read_table(path: str | os.PathLike[str], what: str = "evaluation data") -> Any:
    """A pandas DataFrame from Parquet (file or folder), CSV/TSV or JSON (lines).

    Raises:
        UsageError: missing path or an unknown format.
    """
    import pandas as pd

    target = Path(path)
    if not target.exists():
        raise UsageError(
            f"{what} {target} does not exist",
            hint="pass --data PATH or set models.<name>.eval_data in mlcd.yaml",
        )
    suffix = target.suffix.lower()
    if target.is_dir() or suffix in (".parquet", ".pq"):
        return pd.read_parquet(target)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(target, sep="\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(target, lines=True)
    if suffix == ".json":
        return pd.read_json(target)
    raise UsageError(
        f"cannot read {what} {target}: unknown format '{suffix}'",
        hint="use Parquet, CSV or JSON lines",
    )
