"""Tracebacks instead of messages (issue 20, item 6): each case gets a worded error and its exit code.

A read-only project: these tests run as root in CI, and root ignores file modes, so
``chmod -R a-w`` proves nothing there. As root each command runs inside a private mount
namespace where the project is bind-mounted read-only (``unshare -m`` + ``mount -o
remount,bind,ro``): the kernel answers EROFS exactly as on a read-only checkout. As any other
user the project is made read-only with ``chmod -R a-w`` (EACCES). Where neither is possible
the tests are skipped.
"""

from __future__ import annotations

import os
import resource
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

Runner = Callable[..., subprocess.CompletedProcess[str]]

_RO_MOUNT = (
    'mount --bind "$ROOT" "$ROOT" && mount -o remount,bind,ro "$ROOT" "$ROOT" '
    '&& cd "$ROOT" && exec "$@"'
)


def mlcd(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real ``mlcd`` console script."""
    return subprocess.run(
        [sys.executable, "-m", "mlcd.cli.entry", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec_fn,
    )


@pytest.fixture(scope="module")
def _ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose one stage ran, made once per module by the real CLI."""
    root = tmp_path_factory.mktemp("cli-errors") / "proj"
    assert run_cli(["init", str(root)], cwd=root.parent).returncode == 0
    (root / "mlcd.yaml").write_text(
        "version: 1\nstages:\n  train:\n"
        "    cmd: python -c \"open('out.txt', 'w').write('one')\"\n"
        "    outs: [out.txt]\n",
        encoding="utf-8",
    )
    first = mlcd(["run"], cwd=root)
    assert first.returncode == 0, first.stderr
    return root


def _project(ran: Path, tmp_path: Path) -> Path:
    """The module's ran project copied into ``tmp_path`` (it names no folder of its own but in
    the stat cache, which just misses)."""
    root = tmp_path / "proj"
    shutil.copytree(ran, root, symlinks=True)
    return root


def _mount_works(root: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", _RO_MOUNT, "sh", "true"],
        env={**os.environ, "ROOT": str(root)},
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.fixture
def read_only(_ran: Path, tmp_path: Path) -> Iterator[tuple[Path, Runner]]:
    """A project that ran once, and a runner that sees it read-only."""
    root = _project(_ran, tmp_path)
    (root / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    # the stage is now out of date: 'mlcd run' would have to run it and write out.txt
    text = (root / "mlcd.yaml").read_text(encoding="utf-8").replace("'one'", "'two'")
    (root / "mlcd.yaml").write_text(text, encoding="utf-8")

    if _mount_works(root):

        def runner(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", _RO_MOUNT, "sh"]
            return subprocess.run(
                [*command, *args],
                env={**os.environ, "PYTHONUNBUFFERED": "1", "ROOT": str(root)},
                capture_output=True,
                text=True,
                timeout=300,
            )

        yield root, runner
        return
    if os.geteuid() == 0:
        pytest.skip("root, and no mount namespace to make the project read-only")
    modes = {p: p.stat().st_mode for p in [root, *root.rglob("*")]}
    for path in modes:
        path.chmod(stat.S_IMODE(modes[path]) & ~0o222)

    def plain(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)

    try:
        yield root, plain
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))


_MLCD = [sys.executable, "-m", "mlcd.cli.entry"]


# guards against: EROFS tracebacks from read-only commands on a read-only checkout
@pytest.mark.parametrize("command", [["runs", "list"], ["status"], ["models", "list"]])
def test_read_only_commands_work_on_a_read_only_project(
    read_only: tuple[Path, Runner], command: list[str]
) -> None:
    _root, runner = read_only

    result = runner([*_MLCD, *command])

    assert result.returncode in (0, 1), result.stderr  # status exits 1 when a stage is stale
    assert "Traceback" not in result.stderr
    if command == ["runs", "list"]:
        assert "pipeline" in result.stdout  # the run recorded before, read from the database
    if command == ["status"]:
        assert "train" in result.stdout


# guards against: EROFS tracebacks (exit 1) from commands that must write
@pytest.mark.parametrize("command", [["run"], ["data", "add", "data.csv"]])
def test_writing_commands_say_what_they_cannot_write(
    read_only: tuple[Path, Runner], command: list[str]
) -> None:
    root, runner = read_only

    result = runner([*_MLCD, *command])

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "read-only" in result.stderr.lower()
    assert str(root) in result.stderr  # names what it could not write
    assert (root / "out.txt").read_text(encoding="utf-8") == "one"  # nothing lost


# guards against: EROFS from mlcd.start_run() escaping as a bare OSError
def test_start_run_on_a_read_only_project_raises_a_store_error(
    read_only: tuple[Path, Runner],
) -> None:
    _root, runner = read_only
    script = (
        "import mlcd\n"
        "from mlcd.errors import StoreError\n"
        "try:\n"
        "    with mlcd.start_run():\n"
        "        mlcd.log_metric('loss', 0.5)\n"
        "except StoreError as exc:\n"
        "    print('refused:', exc.message)\n"
    )

    result = runner([sys.executable, "-c", script])

    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout
    assert "read-only" in result.stdout


# guards against: hiding the traceback from someone debugging mlcd itself
def test_mlcd_debug_shows_the_traceback(read_only: tuple[Path, Runner]) -> None:
    _root, runner = read_only

    result = runner(["env", "MLCD_DEBUG=1", *_MLCD, "data", "add", "data.csv"])

    assert result.returncode != 0
    assert "Traceback" in result.stderr


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


# guards against: OSError [Errno 27] (EFBIG) as a traceback from 'mlcd data add'
def test_data_add_past_the_file_size_limit_exits_3(_ran: Path, tmp_path: Path) -> None:
    root = _project(_ran, tmp_path)
    (root / "big.bin").write_bytes(os.urandom(3_000_000))

    result = mlcd(["data", "add", "big.bin"], cwd=root, preexec_fn=_small_files)

    assert result.returncode == 3, result.stderr
    assert "File too large" in result.stderr
    assert "ulimit -f" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "big.bin.mlcd").exists()
    assert not any((root / ".mlcd" / "objects" / "tmp").glob("*"))


# guards against: OverflowError from a version number SQLite cannot hold
def test_model_version_too_large_is_a_usage_error(_ran: Path, tmp_path: Path) -> None:
    root = _project(_ran, tmp_path)

    result = mlcd(["models", "show", "m/99999999999999999999999"], cwd=root)

    assert result.returncode == 2, result.stderr
    assert "version must be a positive number" in result.stderr
    assert "Traceback" not in result.stderr


# guards against: a raw pydantic ValidationError for a port out of range
def test_serve_port_out_of_range_is_a_usage_error(_ran: Path, tmp_path: Path) -> None:
    root = _project(_ran, tmp_path)

    result = mlcd(["serve", "m", "--port", "99999"], cwd=root)

    assert result.returncode == 2, result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


# guards against: OSError [Errno 36] (ENAMETOOLONG) from load_model
def test_load_model_with_a_too_long_name_raises_a_registry_error(tmp_path: Path) -> None:
    import mlcd
    from mlcd.errors import RegistryError

    with pytest.raises(RegistryError, match="File name too long"):
        mlcd.load_model(str(tmp_path / ("x" * 5000)))
