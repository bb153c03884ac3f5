"""The tags that mark an experiment run (a module of its own: the queue needs them without
loading the pipeline)."""

#: Tags of an experiment run.
TAG_EXP = "mlcd.exp"
TAG_NAME = "mlcd.exp.name"
TAG_BASE = "mlcd.exp.base"
TAG_OVERRIDES = "mlcd.exp.overrides"
