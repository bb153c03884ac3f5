"""`make demo` end to end: the example project through the real CLI, in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    work = tmp_path / "demo"

    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "==> demo complete" in result.stdout
    assert "restored from cache, none executed" in result.stdout
    assert (work / "mlcd.lock").is_file()
    assert (work / "models" / "churn").is_dir()


@pytest.mark.slow
def test_demo_fails_loudly_when_a_stage_breaks(tmp_path: Path) -> None:
    broken = tmp_path / "demo.py"
    source = (REPO / "examples" / "demo.py").read_text()
    # the same demo, on a copy of the example whose train stage crashes
    example = tmp_path / "churn"
    subprocess.run(["cp", "-r", str(REPO / "examples" / "churn"), str(example)], check=True)
    train = example / "src" / "train.py"
    train.write_text(
        train.read_text().replace(
            "def main() -> None:\n", "def main() -> None:\n    raise SystemExit('boom')\n"
        )
    )
    broken.write_text(
        source.replace('EXAMPLE = REPO / "examples" / "churn"', f"EXAMPLE = Path({str(example)!r})")
    )

    result = subprocess.run(
        [sys.executable, str(broken), "--workdir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 1
    assert "FAILED at step 2 (first_run)" in result.stderr
    assert "stage(s) failed: train" in result.stderr
