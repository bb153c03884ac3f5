"""``mlcd data from-log``: write a log dataset to a Parquet file and record that it was made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.logdata.dataset import LogDataset, read_log_dataset, write_dataset

if TYPE_CHECKING:
    from mlcd.store import Store


@dataclass(frozen=True)
class Export:
    """A dataset written from the log: where, its digest and its manifest."""

    path: str
    digest: str
    dataset: LogDataset

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, **self.dataset.to_dict()}


def export_log_dataset(
    store: Store,
    root: str | Path,
    model: str,
    path: str | Path,
    *,
    since: float | None = None,
    until: float | None = None,
    labelled_only: bool = False,
    sample: int | None = None,
    stratify: str | None = None,
    seed: int = 0,
    label: str = "label",
    progress: Callable[..., None] | None = None,
) -> Export:
    """Build the dataset of :func:`read_log_dataset`, write it to ``path`` and record a
    ``data.from_log`` event with its digest and manifest.

    Raises:
        UsageError: see :func:`read_log_dataset`.
    """
    from mlcd.store import events

    dataset = read_log_dataset(
        store,
        root,
        model,
        since=since,
        until=until,
        labelled_only=labelled_only,
        sample=sample,
        stratify=stratify,
        seed=seed,
        label=label,
        progress=progress,
    )
    digest = str(write_dataset(dataset, path))
    manifest = dataset.manifest()
    store.transact(
        lambda conn: events.record(
            conn,
            "data.from_log",
            model=model,
            reason=f"{dataset.rows} rows ({dataset.labels_joined} labelled) -> {path}",
            details={
                "path": str(path),
                "digest": digest,
                "since": since,
                "until": until,
                **{k: v for k, v in manifest.items() if k != "features"},
            },
        )
    )
    return Export(str(path), digest, dataset)
