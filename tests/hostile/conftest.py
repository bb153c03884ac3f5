"""A real model server for the hostile-input tests (the serve tests' fixtures, reused)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.serve.conftest import (  # noqa: F401  (fixtures)
    Registry,
    Running,
    cancer,
    cancer_model,
    registry,
    serve,
)


@pytest.fixture
def server(registry: Registry, serve: Callable[..., Running]) -> Running:  # noqa: F811
    """The breast-cancer classifier registered as cancer@champion and served on 127.0.0.1."""
    X, _y = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    return serve()
