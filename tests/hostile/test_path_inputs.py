"""Hostile paths into every kind of path input: CLI arguments, the Python API's artifact
names, HTTP path parameters. Each gets a worded mlcd error (or a 4xx), never a traceback or an
``OSError``, and nothing is written outside the project.

Guards against: a name that walks out of its folder when artifacts are downloaded or
restored (``../``, absolute, backslash, drive), names the OS refuses (NUL, 5,000 characters)
surfacing as crashes, symlinks that make ``mlcd data add`` store files from outside the
project, URL-encoded traversal reaching a file system through the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlcd.errors import UsageError
from tests.conftest import run_cli
from tests.serve.conftest import Running

HOSTILE = [
    "../outside.txt",
    "../../etc/passwd",
    "/etc/passwd",
    "a\\..\\..\\b",
    "C:\\Windows\\win.ini",
    "%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e/x",
    "x" * 5000,
    "dir/./x",
]


@pytest.fixture
def project(project: Path) -> Path:
    """What ``mlcd init`` makes (the session's copy, tests/conftest.py), and a file beside it."""
    (project.parent / "outside.txt").write_text("secret outside the project\n")
    return project


@pytest.mark.parametrize("path", HOSTILE)
def test_data_add_refuses_with_a_worded_error(project: Path, path: str) -> None:
    result = run_cli(["data", "add", path], cwd=project)
    assert result.returncode in (2, 3), result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error:")
    assert not [p for p in project.rglob("*.mlcd") if p.is_file()]  # no pointer written


def test_data_add_refuses_a_symlink_that_leaves_the_project(project: Path) -> None:
    (project / "data").mkdir()
    os.symlink(project.parent / "outside.txt", project / "data" / "link.txt")
    os.symlink(project.parent, project / "data" / "up")
    for target in ("data/link.txt", "data/up"):
        result = run_cli(["data", "add", target], cwd=project)
        assert result.returncode in (2, 3), (target, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    objects = project / ".mlcd" / "objects"
    stored = [p for p in objects.rglob("*") if p.is_file()] if objects.exists() else []
    assert all(b"secret outside" not in p.read_bytes() for p in stored)


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "show", "../../etc/passwd"],
        ["runs", "lineage", "x" * 5000],
        ["models", "register", "m", "../../etc/passwd", "--flavor", "sklearn"],
        ["models", "show", "../m"],
        ["run", "../stage"],
    ],
)
def test_other_path_arguments_are_worded_errors(project: Path, args: list[str]) -> None:
    result = run_cli(args, cwd=project)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "name",
    ["../evil.txt", "/abs.txt", "a\\b.txt", "a\x00b", "x" * 5000, "a//b", "./a"],
)
def test_artifact_names_are_safe_relative_names(tmp_path: Path, name: str) -> None:
    script = f"""
import mlcd
from mlcd.errors import UsageError
open("a.txt", "w").write("x")
with mlcd.start_run():
    try:
        mlcd.log_artifact("a.txt", {name!r})
    except UsageError as exc:
        print("refused:", exc.message[:200])
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: artifact name"), result.stdout


def test_a_safe_artifact_name_is_kept() -> None:
    from mlcd.tracking.api import check_artifact_name

    assert check_artifact_name("plots/roc.html") == "plots/roc.html"
    with pytest.raises(UsageError, match=r"'\.\.'"):
        check_artifact_name("plots/../../x")


def test_hostile_path_parameters_are_4xx_never_5xx(server: Running) -> None:
    paths = [
        "/v1/models/..%2F..%2Fetc%2Fpasswd",
        "/v1/models/%2e%2e/predict",
        "/v2/models/%00/ready",
        "/v2/models/cancer/versions/..%2F1",
        "/v2/models/cancer/versions/%252e%252e/ready",
        "/v1/models/" + "x" * 5000,
        "/v2/models/cancer/versions/" + "9" * 400 + "/ready",
    ]
    for path in paths:
        response = httpx.get(server.url + path, timeout=30)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
        posted = httpx.post(server.url + path, json=[{"a": 1}], timeout=30)
        assert 400 <= posted.status_code < 500, (path, posted.status_code, posted.text[:200])
