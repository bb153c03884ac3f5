"""The one exception tree of mlcd.

Every message says what failed and how to fix it. Only ``serve`` maps these to HTTP
statuses and only ``cli`` maps them to exit codes (see ``exit_code``).

::

    MlcdError
    ├── ConfigError            mlcd.yaml, params, flags or environment are wrong  (exit 2)
    │   └── UnsafePath         a path that would write outside the project       (exit 2)
    ├── UsageError             a command was called wrongly                      (exit 2)
    ├── CheckFailed            a check found a problem (verify, status --check)  (exit 1)
    │   └── GateFailed         a promotion gate did not pass                     (exit 1)
    ├── GateInconclusive       a gate's measurement too noisy to judge           (exit 3)
    ├── ObjectError            the content-addressed object store
    │   ├── ObjectNotFound     a digest that is not stored
    │   └── CorruptObject      stored bytes no longer match their digest
    ├── StoreError             the metadata database
    │   └── NotFound           a run, model, version or alias that does not exist
    ├── PipelineError          the DAG or a stage
    │   └── StageFailed        a stage's command exited non-zero
    ├── TrackingError          runs, params, metrics, filters
    │   └── FilterError        a malformed filter expression (has a position)
    ├── RegistryError          model packages, versions and aliases
    │   └── UnsafeModel        a package that must not be loaded
    ├── EvaluationError        scoring and comparing models
    ├── ServeError             the model server
    ├── MonitorError           drift, quality, performance, alerts
    └── RetrainError           policies and the watch daemon
"""

from __future__ import annotations


class MlcdError(Exception):
    """Root of every error mlcd raises on purpose."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ConfigError(MlcdError):
    """The configuration (mlcd.yaml, params files, environment, flags) is invalid."""

    exit_code = 2


class UnsafePath(ConfigError):
    """A path from mlcd.lock, a pointer, a manifest or a run-cache entry that is not safe."""


class UsageError(MlcdError):
    """A command or function was called with arguments that cannot work."""

    exit_code = 2


class CheckFailed(MlcdError):
    """A check ran and found a problem (as opposed to failing to run)."""

    exit_code = 1


class GateFailed(CheckFailed):
    """A promotion gate did not pass; the alias was not moved."""


class GateInconclusive(MlcdError):
    """A gate could not be judged: its measurement (latency) was noisier than its margin.

    Not a failure (exit 3, "could not finish", not 1): the alias does not move, and
    measuring again on a quieter runner decides.
    """


class ObjectError(MlcdError):
    """The content-addressed object store failed."""


class ObjectNotFound(ObjectError):
    """A digest that is not in the object store."""


class CorruptObject(ObjectError):
    """A stored object whose bytes no longer match its digest."""


class StoreError(MlcdError):
    """The metadata store (SQLite or PostgreSQL) failed."""


class NotFound(StoreError):
    """A run, model, version, alias or other record does not exist."""


class PipelineError(MlcdError):
    """The pipeline definition or its execution failed."""


class StageFailed(PipelineError):
    """A stage's command exited non-zero."""


class TrackingError(MlcdError):
    """Runs, params, metrics or their queries failed."""


class FilterError(TrackingError):
    """A filter expression could not be parsed."""

    exit_code = 2

    def __init__(self, message: str, *, expression: str = "", position: int = 0) -> None:
        self.expression = expression
        self.position = position
        pointer = f"\n  {expression}\n  {' ' * position}^" if expression else ""
        super().__init__(f"{message} (at position {position}){pointer}")


class RegistryError(MlcdError):
    """Model packages, versions or aliases failed."""


class UnsafeModel(RegistryError):
    """A model package that must not be loaded (tampered, escaping paths, untrusted pickle)."""


class EvaluationError(MlcdError):
    """Evaluating or comparing models failed."""


class ServeError(MlcdError):
    """The model server failed."""


class MonitorError(MlcdError):
    """Drift, quality, performance or alerting failed."""


class RetrainError(MlcdError):
    """A retraining policy or the watch daemon failed."""


def exit_code(error: BaseException) -> int:
    """The documented CLI exit code for an error: 1 check, 2 usage/config, 3 runtime."""
    if isinstance(error, MlcdError):
        return error.exit_code
    return 3
