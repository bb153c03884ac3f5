"""Hostile YAML (issue 20, item 4): alias bombs and huge files are refused before they are built.

Each command runs the real ``mlcd`` script (``mlcd.cli.entry``: the fast path for ``status``,
the full CLI for the rest) under an address-space limit, so that a regression fails with a
MemoryError instead of eating the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

_MEMORY_LIMIT = 1536 * 1024 * 1024


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))


def mlcd(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``mlcd`` console script, memory-bounded."""
    return subprocess.run(
        [sys.executable, "-m", "mlcd.cli.entry", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_bounded,
    )


def _billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


# ``project`` (tests/conftest.py): what ``mlcd init`` makes, copied from the session's.


# guards against: nine levels of anchors in mlcd.yaml expanding to a billion nodes (5.5 GB)
@pytest.mark.parametrize("command", [["config", "validate"], ["status"], ["config", "show"]])
def test_alias_bomb_in_config_is_refused_naming_the_limit(
    project: Path, command: list[str]
) -> None:
    (project / "mlcd.yaml").write_text("version: 1\n" + _billion_laughs(), encoding="utf-8")

    result = mlcd(command, cwd=project)

    assert result.returncode == 2, result.stderr
    assert "aliases expand to more than 1,000,000 nodes" in result.stderr
    assert "mlcd.yaml" in result.stderr
    assert "Traceback" not in result.stderr


# guards against: a 50 MB mlcd.yaml parsed for minutes
@pytest.mark.parametrize("command", [["config", "validate"], ["status"], ["config", "show"]])
def test_huge_config_is_refused_before_parsing(project: Path, command: list[str]) -> None:
    line = "# " + "x" * 98 + "\n"
    (project / "mlcd.yaml").write_text(
        "version: 1\n" + line * (50 * 1024 * 1024 // len(line)), encoding="utf-8"
    )

    result = mlcd(command, cwd=project)

    assert result.returncode == 2, result.stderr
    assert "larger than the 1 MiB limit" in result.stderr
    assert "mlcd.yaml" in result.stderr


# guards against: an alias referring to its own collection (endless expansion)
def test_recursive_alias_in_config_is_refused(project: Path) -> None:
    (project / "mlcd.yaml").write_text("version: 1\nloop: &l [1, *l]\n", encoding="utf-8")

    result = mlcd(["config", "validate"], cwd=project)

    assert result.returncode == 2, result.stderr
    assert "recursive" in result.stderr


# guards against: the same bomb in params.yaml, read by a stage's params on the status path
def test_alias_bomb_in_params_file_is_refused(project: Path) -> None:
    (project / "mlcd.yaml").write_text(
        "version: 1\nstages:\n  train:\n    cmd: echo hi\n    params: [a8]\n", encoding="utf-8"
    )
    (project / "params.yaml").write_text(_billion_laughs(), encoding="utf-8")

    result = mlcd(["status"], cwd=project)

    assert result.returncode == 2, result.stderr
    assert "params.yaml" in result.stderr
    assert "aliases expand to more than 1,000,000 nodes" in result.stderr


# guards against: the same bomb in mlcd.lock, which a pull request can change
def test_alias_bomb_in_lock_file_is_refused(project: Path) -> None:
    (project / "mlcd.yaml").write_text(
        "version: 1\nstages:\n  train:\n    cmd: echo hi\n", encoding="utf-8"
    )
    (project / "mlcd.lock").write_text(
        "schema: 1\n" + _billion_laughs() + "stages: {}\n", encoding="utf-8"
    )

    result = mlcd(["status"], cwd=project)

    assert result.returncode == 2, result.stderr
    assert "mlcd.lock" in result.stderr
    assert "aliases expand to more than 1,000,000 nodes" in result.stderr


# anchors a real project uses (shared stage settings) still work
def test_modest_anchors_still_load(project: Path) -> None:
    (project / "mlcd.yaml").write_text(
        "version: 1\n"
        "stages:\n"
        "  a:\n    cmd: echo a\n    env: &env {MODE: fast, SEED: '1'}\n"
        "  b:\n    cmd: echo b\n    env: *env\n",
        encoding="utf-8",
    )

    result = mlcd(["config", "show"], cwd=project)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("MODE: fast") == 2
