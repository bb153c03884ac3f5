"""Production data read back for training: the prediction log joined with feedback labels,
training windows and their held-out samples, and replay memories of past windows.

Layer 2 (beside tracking and registry): imports the store, the object store, the config and
below; read by the pipeline (``from_log:`` deps), evaluation (the no-forgetting gate),
monitoring and retraining.
"""

from mlcd.logdata.dataset import LogDataset, read_log_dataset, read_manifest, write_dataset

__all__ = ["LogDataset", "read_log_dataset", "read_manifest", "write_dataset"]
