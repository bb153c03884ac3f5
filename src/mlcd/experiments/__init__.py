"""Experiments: pipeline runs with overridden params, in a workspace apart from the work tree.

``run_experiment`` copies the project into ``.mlcd/exp/<id>/``, edits its params files, runs the
pipeline there against the project's own stores (so unchanged stages restore from the shared run
cache) and tags the run ``mlcd.exp=1``. ``list_experiments`` tables them against the baseline,
``apply_experiment`` brings one into the work tree, ``remove_experiment`` forgets one.

The names load on first use: ``mlcd exp run --queue`` imports ``mlcd.experiments.queue`` alone,
without the query layer the other modules need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcd.experiments.apply import apply_experiment, find_experiment, remove_experiment
    from mlcd.experiments.overrides import Override, parse_overrides
    from mlcd.experiments.run import ExperimentRun, run_experiment
    from mlcd.experiments.show import ExperimentTable, list_experiments

_WHERE = {
    "ExperimentRun": "run",
    "ExperimentTable": "show",
    "Override": "overrides",
    "apply_experiment": "apply",
    "find_experiment": "apply",
    "list_experiments": "show",
    "parse_overrides": "overrides",
    "remove_experiment": "apply",
    "run_experiment": "run",
}

__all__ = [
    "ExperimentRun",
    "ExperimentTable",
    "Override",
    "apply_experiment",
    "find_experiment",
    "list_experiments",
    "parse_overrides",
    "remove_experiment",
    "run_experiment",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mlcd.experiments' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mlcd.experiments.{module}"), name)
