"""The OpenAPI document says exactly what ``mlcd serve`` answers: schemathesis, every check.

Run against a real server (uvicorn on 127.0.0.1) that believes it is exposed beyond loopback,
so that every route's authentication is in play: once with an admin token (the routes' own
answers: predictions, labels, metadata, every 4xx they document) and once with no token
(the 401s). ``st run --checks all`` covers: no 5xx, status codes and content types that the
document declares, bodies that match their declared schema, schema-valid requests accepted,
schema-invalid ones rejected, and the rest of schemathesis's checks. A single worker: its
coverage phase is not thread-safe in this schemathesis version.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.serve.conftest import Registry, Running, cancer, cancer_model

from mlcd.config import Serve
from mlcd.store import tokens

ST = Path(sys.executable).parent / "st"
pytestmark = pytest.mark.skipif(not ST.exists(), reason="schemathesis is in the dev extra")


def _schemathesis(url: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ST), "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "40",
         "--workers", "1", "--seed", "20261204", "--no-color", *extra],
        capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
    )  # fmt: skip


def _summary(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(line[:300] for line in result.stdout.splitlines()[-60:])


@pytest.fixture
def exposed(registry: Registry, serve: Callable[..., Running]) -> tuple[Running, str]:
    X, _y = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    server = serve(settings=Serve(host="0.0.0.0", poll_interval_s=0.2))
    with registry.store.write() as conn:
        admin = tokens.create(conn, "schemathesis", "admin")
    return server, admin


def test_every_route_answers_as_documented_with_a_token(
    exposed: tuple[Running, Any], tmp_path: Path
) -> None:
    server, admin = exposed
    result = _schemathesis(server.url, tmp_path, "-H", f"Authorization: Bearer {admin}")
    assert result.returncode == 0, _summary(result)
    assert "14 passed" in result.stdout or "14/14" in result.stdout, _summary(result)


def test_every_route_answers_as_documented_without_a_token(
    exposed: tuple[Running, Any], tmp_path: Path
) -> None:
    server, _admin = exposed
    result = _schemathesis(server.url, tmp_path)
    assert result.returncode == 0, _summary(result)


def test_the_document_follows_the_served_model(exposed: tuple[Running, Any]) -> None:
    server, _admin = exposed
    document = server.client.get("/openapi.json").json()
    feedback = document["paths"]["/v1/feedback"]["post"]
    label = feedback["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    assert label["properties"]["label"] == {"enum": [0, 1]}  # the served classifier's classes
    assert set(feedback["responses"]) >= {"200", "401", "403", "404", "409", "422", "429"}
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "text/plain" in metrics
    predict = document["paths"]["/v1/models/{name}/predict"]["post"]["responses"]
    assert set(predict) >= {"200", "400", "401", "403", "404", "413", "415", "422", "503", "504"}
