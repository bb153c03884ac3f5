"""``mlcd runs list`` through the console script's fast path (no typer, no SQLAlchemy) prints
exactly what the full CLI prints, and hands everything it does not cover to the full CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlcd.store import Store
from mlcd.store import runs as repo

#: The console script, reporting which heavy libraries it loaded (on stderr, last line).
ENTRY = (
    "import sys\n"
    "from mlcd.cli.entry import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    heavy = [m for m in ('sqlalchemy', 'typer', 'pydantic') if m in sys.modules]\n"
    "    sys.stderr.write('\\nloaded=' + ','.join(heavy) + '\\n')\n"
)


def _mlcd(root: Path, *args: str, **env: str) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
    full_env.update(env, COLUMNS="200")
    result = subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    loaded = result.stderr.rstrip().rsplit("loaded=", 1)[-1]
    return result.returncode, result.stdout, loaded


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / ".mlcd").mkdir(parents=True)
    (root / "mlcd.yaml").write_text("{}\n", encoding="utf-8")
    store = Store("sqlite:///.mlcd/mlcd.db", root=root)

    def fill(conn: object) -> None:
        for i in range(60):
            run_id = f"{i:032x}"
            repo.create_run(conn, run_id=run_id, name=f"n{i % 5}", started_at=1e9 + i // 2)  # type: ignore[arg-type]
            repo.log_metric_rows(conn, run_id, [(f"m{i % 6}", i / 7, 0, 1.0)])  # type: ignore[arg-type]
            repo.log_params(conn, run_id, {"i": i})  # type: ignore[arg-type]
            if i % 3:
                repo.end_run(conn, run_id, "finished")  # type: ignore[arg-type]

    store.transact(fill)
    store.dispose()
    return root


@pytest.mark.parametrize(
    "args", [[], ["--json"], ["-n", "7"], ["--limit=3", "--json"], ["--limit", "500"]]
)
def test_fast_runs_list_prints_what_the_full_cli_prints(filled: Path, args: list[str]) -> None:
    _mlcd(filled, "config", "show")  # the full CLI validates mlcd.yaml once
    code, fast, loaded = _mlcd(filled, "runs", "list", *args)
    assert code == 0 and loaded == ""  # neither SQLAlchemy, typer nor pydantic
    code, full, loaded = _mlcd(filled, "runs", "list", *args, MLCD_NO_FAST_STORE="1")
    assert code == 0 and "sqlalchemy" in loaded
    assert fast == full
    assert fast.strip()


def test_runs_list_options_the_fast_path_lacks_go_to_the_full_cli(filled: Path) -> None:
    code, out, loaded = _mlcd(filled, "runs", "list", "--filter", "params.i > 57", "--json")
    assert code == 0 and "typer" in loaded
    assert out.count('"id"') == 2
    code, _, loaded = _mlcd(filled, "runs", "list", "-n", "0")
    assert code == 2 and "typer" in loaded  # typer words the usage error


def test_new_store_falls_back_and_is_created(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlcd.yaml").write_text("{}\n", encoding="utf-8")
    code, out, loaded = _mlcd(root, "runs", "list", "--json")
    assert code == 0 and "sqlalchemy" in loaded  # Store creates and migrates the database
    assert out.strip() == "[]"
    code, out, loaded = _mlcd(root, "runs", "list", "--json")
    assert code == 0 and "sqlalchemy" not in loaded  # the fast path (mlcd.yaml validated)
    assert out.strip() == "[]"
    code, out, loaded = _mlcd(root, "runs", "list", "--json")
    assert code == 0 and loaded == ""  # the validated record: no pydantic either
    assert out.strip() == "[]"


def test_no_project_is_the_same_error(tmp_path: Path) -> None:
    code, _, loaded = _mlcd(tmp_path, "runs", "list")
    assert code == 2 and "typer" not in loaded
    full = subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", "runs", "list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 2


@pytest.mark.parametrize("columns", ["80", "132", "60"])
def test_help_and_version_without_typer_print_what_typer_prints(
    tmp_path: Path, columns: str
) -> None:
    env = {**os.environ, "COLUMNS": columns}
    for args in (["--help"], ["--version"]):
        fast = subprocess.run(
            [sys.executable, "-c", ENTRY, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        full = subprocess.run(
            [sys.executable, "-m", "mlcd.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert fast.returncode == full.returncode == 0
        assert fast.stdout == full.stdout
        loaded = fast.stderr.rstrip().rsplit("loaded=", 1)[-1]
        assert loaded == ("typer" if columns == "60" and args == ["--help"] else "")
