"""Experiments: pipeline runs with overridden params, in a workspace apart from the work tree.

``run_experiment`` copies the project into ``.mlcd/exp/<id>/``, edits its params files, runs the
pipeline there against the project's own stores (so unchanged stages restore from the shared run
cache) and tags the run ``mlcd.exp=1``. ``list_experiments`` tables them against the baseline,
``apply_experiment`` brings one into the work tree, ``remove_experiment`` forgets one.
"""

from __future__ import annotations

from mlcd.experiments.apply import apply_experiment, find_experiment, remove_experiment
from mlcd.experiments.overrides import Override, parse_overrides
from mlcd.experiments.run import ExperimentRun, run_experiment
from mlcd.experiments.show import ExperimentTable, list_experiments

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
