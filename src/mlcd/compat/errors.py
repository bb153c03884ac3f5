"""The error an MLflow call mlcd does not provide raises."""

from __future__ import annotations

from mlcd.errors import UsageError


class UnsupportedCall(UsageError, AttributeError):
    """An MLflow API that ``mlcd.compat.mlflow`` does not provide (names the call).

    It is an ``AttributeError`` too, so ``hasattr(mlflow, "x")`` and ``getattr(..., default)``
    keep working for code that probes for optional features.
    """

    def __init__(self, call: str, hint: str | None = None) -> None:
        self.call = call
        super().__init__(
            f"mlcd.compat.mlflow does not support {call}",
            hint=hint
            or "use mlcd's own API for it (docs/migrating.md lists what the compatibility "
            "layer covers), or keep the real mlflow for this script",
        )
