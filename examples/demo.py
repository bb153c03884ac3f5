"""The demo behind ``make demo``: the churn example through mlcd, one narrated step at a time.

Every step drives the real CLI (``python -m mlcd.cli.main ...``) in a fresh copy of
``examples/churn`` under ``.demo/`` (recreated each time), checks what it did, and says so.
Steps are plain functions in ``STEPS``; later parts of the lifecycle (evaluate, register,
serve, monitor, retrain) add theirs to the list. Exit code 0 when every step succeeded, 1
when one failed (its output is shown).

Usage: python examples/demo.py [--workdir DIR] [--keep-going]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "churn"


class DemoFailed(Exception):
    """A step saw something other than what the demo promises."""


@dataclass
class Demo:
    """The demo's working folder and what steps tell each other."""

    work: Path
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment of every command: this interpreter's tools first on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def mlcd(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in the working folder; its progress (stderr) goes to the terminal."""
        result = subprocess.run(
            [sys.executable, "-m", "mlcd.cli.main", *args],
            cwd=self.work,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        if result.returncode != expect:
            raise DemoFailed(
                f"'mlcd {' '.join(args)}' exited with {result.returncode} (expected {expect})\n"
                f"{result.stdout}"
            )
        return result

    def mlcd_json(self, *args: str) -> Any:
        """Run a command with ``--json`` and parse what it printed."""
        return json.loads(self.mlcd(*args, "--json").stdout)

    def git(self, *args: str) -> str:
        """Run git in the working folder (with a fixed identity)."""
        result = subprocess.run(
            ["git", "-c", "user.name=mlcd demo", "-c", "user.email=demo@mlcd.invalid", *args],
            cwd=self.work,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise DemoFailed(f"'git {' '.join(args)}' failed: {result.stderr.strip()}")
        return result.stdout


def say(text: str) -> None:
    """One line of narration."""
    print(f"    {text}", flush=True)


def _outcomes(document: dict[str, Any]) -> dict[str, str]:
    return {s["stage"]: s["outcome"] for s in document["stages"]}


# ---------------------------------------------------------------------------------- steps
def setup_project(demo: Demo) -> None:
    """Copy the churn example into a fresh folder and commit it to a new git repository."""
    if demo.work.exists():
        shutil.rmtree(demo.work)
    shutil.copytree(EXAMPLE, demo.work, ignore=shutil.ignore_patterns(".mlcd", "__pycache__"))
    demo.git("init", "-q", "-b", "main")
    demo.git("add", "-A")
    demo.git("commit", "-q", "-m", "churn example")
    stages = demo.mlcd("dag").stdout.strip().splitlines()
    say(f"project in {demo.work}, committed; pipeline:")
    for line in stages:
        say(f"  {line}")


def first_run(demo: Demo) -> None:
    """Run the whole pipeline: every stage executes and is recorded."""
    started = time.monotonic()
    document = demo.mlcd_json("run")
    elapsed = time.monotonic() - started
    outcomes = _outcomes(document)
    if set(outcomes.values()) != {"ran"}:
        raise DemoFailed(f"expected every stage to run the first time, got {outcomes}")
    lock = (demo.work / "mlcd.lock").read_text(encoding="utf-8")
    metrics = json.loads((demo.work / "metrics" / "eval.json").read_text(encoding="utf-8"))
    demo.facts["first_run_s"] = elapsed
    demo.facts["run_id"] = document["run_id"]
    demo.git(
        "add", "mlcd.lock", "metrics", "plots", ".gitignore", "data/.gitignore", "models/.gitignore"
    )
    demo.git("commit", "-q", "-m", "first pipeline run")
    say(f"{len(outcomes)} stages ran in {elapsed:.1f}s (run {document['run_id'][:12]})")
    say(f"test metrics: roc_auc={metrics['roc_auc']}, f1={metrics['f1']}")
    say(f"mlcd.lock ({len(lock.splitlines())} lines) committed with the metrics")


def fresh_checkout(demo: Demo) -> None:
    """Delete every output, as in a fresh clone: the second run restores them all from cache."""
    demo.git("clean", "-q", "-fdX", "-e", "!.mlcd", "-e", "!.mlcd/**")
    missing = [
        p
        for p in ("data/prepared", "data/features", "models/churn")
        if not (demo.work / p).exists()
    ]
    say(f"outputs removed: {', '.join(missing)}")
    status = demo.mlcd_json("status")
    stale = [s["stage"] for s in status["stages"] if s["status"] == "stale"]
    say(f"'mlcd status' finds {len(stale)} stale stage(s): {', '.join(stale)}")
    started = time.monotonic()
    document = demo.mlcd_json("run")
    elapsed = time.monotonic() - started
    outcomes = _outcomes(document)
    if "ran" in outcomes.values() or set(outcomes.values()) - {"cached", "skipped"}:
        raise DemoFailed(
            f"expected the second run to restore everything from cache, got {outcomes}"
        )
    restored = [name for name, outcome in outcomes.items() if outcome == "cached"]
    say(
        f"second run: {len(restored)} stage(s) restored from cache, none executed, {elapsed:.1f}s "
        f"(first run {demo.facts['first_run_s']:.1f}s)"
    )


def nothing_to_do(demo: Demo) -> None:
    """Run again with nothing changed: nothing runs, nothing is recorded, in milliseconds."""
    started = time.monotonic()
    document = demo.mlcd_json("run")
    elapsed = time.monotonic() - started
    if document["run_id"] is not None or set(_outcomes(document).values()) != {"skipped"}:
        raise DemoFailed(f"expected a no-op, got {_outcomes(document)}")
    if demo.git("status", "--porcelain").strip():
        raise DemoFailed(
            "the work tree should be clean: outputs are git-ignored, mlcd.lock committed"
        )
    say(
        f"up to date: nothing ran ({elapsed * 1000:.0f} ms including Python start-up); git tree clean"
    )


#: The demo, in order. Later steps (evaluate, register, serve, monitor, retrain) append here.
STEPS: list[Callable[[Demo], None]] = [setup_project, first_run, fresh_checkout, nothing_to_do]


def main(argv: list[str] | None = None) -> int:
    """Run every step; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo", help="recreated each time")
    args = parser.parse_args(argv)
    demo = Demo(work=args.workdir.resolve())
    total = len(STEPS)
    started = time.monotonic()
    for index, step in enumerate(STEPS, 1):
        title = (step.__doc__ or step.__name__).strip().splitlines()[0]
        print(f"==> [{index}/{total}] {title}", flush=True)
        step_started = time.monotonic()
        try:
            step(demo)
        except DemoFailed as exc:
            print(f"FAILED at step {index} ({step.__name__}): {exc}", file=sys.stderr, flush=True)
            return 1
        say(f"({time.monotonic() - step_started:.1f}s)")
    print(f"==> demo complete in {time.monotonic() - started:.0f}s; explore it in {demo.work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
