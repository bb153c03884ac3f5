"""Source fixtures: the real projects and CLI of the pipeline tests, the moto S3 server of the
object-store tests."""

from __future__ import annotations

from tests.objects.test_s3 import s3_endpoint  # noqa: F401  (fixtures)
from tests.pipeline.conftest import make_project, mlcd  # noqa: F401  (fixtures)
