"""The console-script entry: `status` and `run` skip typer, and load nothing heavy on a no-op."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlcd.cli.entry import parse
from tests.pipeline.conftest import CHAIN, CHAIN_FILES, stage_env

HEAVY = ["typer", "pydantic", "sqlalchemy", "rich", "yaml", "pandas", "numpy", "click"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], ("show_status", {"stages": []})),
        (
            ["status", "--json", "--check", "a"],
            ("show_status", {"stages": ["a"], "as_json": True, "check": True}),
        ),
        (
            ["run", "-f", "-j", "2", "b"],
            ("run_stages", {"stages": ["b"], "force": True, "jobs": 2}),
        ),
        (
            ["run", "--jobs=3", "--dry-run"],
            ("run_stages", {"stages": [], "jobs": 3, "dry_run": True}),
        ),
        (["run", "--executor", "ray"], ("run_stages", {"stages": [], "executor": "ray"})),
        (["data", "add", "a", "b/c"], ("add_data_paths", {"paths": [Path("a"), Path("b/c")]})),
        (["data", "status", "--check"], ("show_data_status", {"check": True})),
    ],
)
def test_plain_calls_are_parsed(argv: list[str], expected: tuple[str, dict[str, object]]) -> None:
    assert parse(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["status", "--help"],
        ["run", "--jobs"],
        ["run", "-j", "x"],
        ["gc"],
        ["run", "--", "a"],
        ["data"],
        ["data", "add"],
        ["data", "status", "x"],
        ["data", "rm", "x"],
    ],
)
def test_anything_else_goes_to_the_full_cli(argv: list[str]) -> None:
    assert parse(argv) is None


def _entry(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlcd.cli.entry", *args],
        cwd=root,
        env={**stage_env(), "PATH": stage_env()["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fast_path_prints_what_the_full_cli_prints(ran_chain, mlcd) -> None:
    root = ran_chain()
    (root / "a.txt").write_text("changed\n")

    for args in (["status"], ["status", "--json"], ["status", "--check"]):
        fast, full = _entry(root, *args), mlcd(root, *args)
        assert (fast.returncode, fast.stdout) == (full.returncode, full.stdout)


def test_fast_path_reports_errors_like_the_full_cli(make_project, mlcd) -> None:
    root = make_project(CHAIN.replace("outs: [c.txt]", "outs: [../c.txt]"), CHAIN_FILES)

    fast, full = _entry(root, "run"), mlcd(root, "run")

    assert fast.returncode == full.returncode == 2
    assert fast.stderr == full.stderr


def test_help_falls_back_to_typer(tmp_path: Path) -> None:
    result = _entry(tmp_path, "run", "--help")

    assert result.returncode == 0
    assert "--dry-run" in result.stdout


@pytest.mark.parametrize("command", ["status", "run"])
def test_no_op_loads_no_heavy_library(ran_chain, mlcd, command: str) -> None:
    root = ran_chain()
    _entry(root, "status")  # settles the snapshot and stat caches once
    probe = (
        "import sys, json\n"
        f"sys.argv = ['mlcd', '{command}']\n"
        "from mlcd.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('@@' + json.dumps(sorted(sys.modules)))\n"
    )

    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True)

    line = next(line for line in out.stdout.splitlines() if line.startswith("@@"))
    loaded = set(json.loads(line[2:]))
    assert not {m for m in HEAVY if m in loaded}, out.stderr


def test_data_commands_through_the_fast_path(make_project, mlcd) -> None:
    root = make_project(CHAIN, {**CHAIN_FILES, "raw/x.csv": "x\n1\n"})

    added = _entry(root, "data", "add", "raw")
    fast, full = _entry(root, "data", "status", "--json"), mlcd(root, "data", "status", "--json")

    assert added.returncode == 0, added.stderr
    assert "tracked raw (1 file(s), 4 bytes) -> raw.mlcd" in added.stdout
    assert (fast.returncode, fast.stdout) == (full.returncode, full.stdout)
    assert json.loads(fast.stdout)["data"][0]["status"] == "unchanged"
