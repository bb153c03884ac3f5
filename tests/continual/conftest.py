"""Continual-learning fixtures: the real registry and server of the serve tests."""

from __future__ import annotations

from tests.serve.conftest import registry, serve  # noqa: F401  (fixtures used by these tests)
