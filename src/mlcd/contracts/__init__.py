"""Data contracts: what a dataset must satisfy, checked where it is produced or read.

Declared under ``data:`` in ``mlcd.yaml`` (:mod:`mlcd.contracts.spec`), checked with pyarrow
compute in batches (:mod:`mlcd.contracts.validate`); distribution bounds use the monitor's
statistics (:mod:`mlcd.stats`). A low layer: no store, no config.
"""

from mlcd.contracts.spec import ColumnRule, Contract, RowCheck, RowCount
from mlcd.contracts.validate import CheckResult, ContractReport, validate_file

__all__ = [
    "CheckResult",
    "ColumnRule",
    "Contract",
    "ContractReport",
    "RowCheck",
    "RowCount",
    "validate_file",
]
