"""Data-contract fixtures: the real projects and CLI of the pipeline tests, the real registry
and server of the serve tests."""

from __future__ import annotations

from tests.pipeline.conftest import make_project, mlcd  # noqa: F401  (fixtures)
from tests.serve.conftest import registry, serve  # noqa: F401  (fixtures)
