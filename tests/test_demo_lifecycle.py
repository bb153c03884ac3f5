"""`make demo` end to end (with --small): the whole lifecycle through the real CLI and server.

Also its unhappy paths: a broken stage, gates that refuse the retrained model, and Ctrl-C —
each must exit with its code, say why, and leave no server or watch process behind. The last
two are about the live part (serving, traffic, retraining): they go on (``--from 8``) on a copy
of the project the whole demo's run left after step 7 (``--checkpoint``), instead of each
training, evaluating and promoting it again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo.py"


def _run_demo(
    demo: Path, work: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``python demo.py --workdir work *args``, its output captured."""
    return subprocess.run(
        [sys.executable, str(demo), "--workdir", str(work), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _prepared_folder(factory: pytest.TempPathFactory) -> Path:
    """Where this session keeps the demo stopped after step 7 (shared by the xdist workers)."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this session's folder, above each worker's own
    return base / "demo-until-7"


@pytest.fixture(scope="session")
def prepared_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --small demo stopped after step 7 (as ``--until 7`` leaves it): the project set up,
    trained, its v1 evaluated and champion, a weaker v2 refused. Usually the checkpoint the
    whole demo's test left (``--checkpoint``: it runs first in their xdist group); made here
    with ``--until 7`` when that test did not run or failed before step 8. Each test copies
    it before it goes on."""
    from filelock import FileLock

    work = _prepared_folder(tmp_path_factory)
    with FileLock(str(work.with_name("demo-until-7.lock"))):
        if not (work / "demo-state.json").is_file():
            shutil.rmtree(work, ignore_errors=True)
            result = _run_demo(DEMO, work, "--small", "--until", "7")
            assert result.returncode == 0, result.stdout + result.stderr
            assert "==> stopped after step 7 as asked" in result.stdout
            assert "(4 deployment)" not in result.stdout  # nothing live started
    return work


def _copy_of(prepared: Path, work: Path) -> Path:
    """A copy of the prepared demo folder (git repository, mlcd state, demo-state.json)."""
    shutil.copytree(prepared, work, symlinks=True)
    return work


def _demo_on(tmp_path: Path, edit: dict[str, tuple[str, str]]) -> Path:
    """A copy of the demo running on a copy of the example with ``{file: (old, new)}`` edits."""
    example = tmp_path / "churn"
    shutil.copytree(REPO / "examples" / "churn", example)
    for name, (old, new) in edit.items():
        path = example / name
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{name} has no {old!r}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    demo = tmp_path / "demo.py"
    shutil.copy(DEMO.parent / "demo_kit.py", tmp_path / "demo_kit.py")
    source = DEMO.read_text(encoding="utf-8")
    anchor = 'EXAMPLE = REPO / "examples" / "churn"'
    assert anchor in source
    demo.write_text(
        source.replace(anchor, f"EXAMPLE = Path({str(example)!r})").replace(
            "REPO = Path(__file__).resolve().parent.parent", f"REPO = Path({str(REPO)!r})"
        ),
        encoding="utf-8",
    )
    return demo


def _started_pids(output: str) -> dict[str, int]:
    """The background processes the demo said it started: {'serve': pid, 'watch': pid}."""
    pids = {}
    for match in re.finditer(
        r"(http://127\.0\.0\.1:\d+|'mlcd watch[^']*') .*?\(pid (\d+)\)", output
    ):
        pids["serve" if match.group(1).startswith("http") else "watch"] = int(match.group(2))
    return pids


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.xdist_group("demo_live")
def test_demo_retrains_on_drift_and_swaps_without_failing_a_request(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path / "demo"
    checkpoint = _prepared_folder(tmp_path_factory)  # for prepared_demo's users, after this

    result = _run_demo(DEMO, work, "--small", "--checkpoint", str(checkpoint))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "==> demo complete" in result.stdout
    assert "restored from cache, none executed" in result.stdout
    summary = json.loads((work / "summary.json").read_text(encoding="utf-8"))
    assert summary["ok"] is True and summary["size"] == "small"
    versions = summary["versions"]
    first, refused, retrained = versions["first"], versions["refused"], versions["retrained"]
    # a retrained champion; the challenger alias is gone once it became champion
    assert versions["champion"] == retrained and retrained not in (first, refused)
    assert summary["aliases"] == {"champion": retrained}
    # the gates: the first version passed, the weaker one was refused, the retrained one passed
    assert summary["gates"][f"v{first}"]["failed"] == []
    assert summary["gates"][f"v{refused}"]["failed"]
    assert summary["gates"][f"v{retrained}"]["failed"] == []
    assert summary["gates"][f"v{retrained}"]["total"] == 7  # the no-forgetting gate among them
    # it learned from the labelled production traffic: some rows trained it, some tested it
    production = summary["retrain"]["production_rows"]
    assert production["train"] > 0 and production["test"] > 0
    assert "labelled" in result.stdout and "no past window loses" in result.stdout
    # drift detected, on the features the market shift moves
    drift = summary["drift"]
    assert drift["detected"] is True and drift["monitor_exit"] == 1
    assert drift["share"] >= 0.5 and {"monthly_charges", "tenure_months"} <= set(drift["drifted"])
    # the drifted traffic trips the training contract's warn-only rule: counted, still answered
    assert drift["contract_violations"].get("support_calls:max", 0) > 0
    assert "warehouse: 2500 customers" in result.stdout  # the sql: source the pipeline reads
    # zero failed requests while the canary ran and the server swapped; both versions answered
    requests = summary["requests"]
    assert requests["failed"] == 0
    by_version = requests["by_version"]
    for answered_by in (f"v{first} (primary)", f"v{retrained} (canary)", f"v{retrained} (primary)"):
        assert by_version.get(answered_by, 0) > 0, by_version
    assert requests["answered"] == sum(by_version.values())
    # one retrain answered the drift, one canary ran and was promoted (none restarted it)
    events = summary["events"]
    assert events["retrain.started"] == 1 and events["canary.started"] == 1
    assert events["canary.promoted"] == 1 and "retrain.skipped" not in events
    for report in summary["reports"].values():
        assert Path(report).is_file(), report
    pids = _started_pids(result.stdout)
    assert set(pids) == {"serve", "watch"} and all(_gone(pid) for pid in pids.values())
    # the checkpoint is the folder as --until 7 leaves it: state for --from 8, nothing live
    state = json.loads((checkpoint / "demo-state.json").read_text(encoding="utf-8"))
    assert state["done"] == 7 and state["size"] == "small"
    assert not (work / "demo-state.json").exists() and not (checkpoint / "logs").exists()


@pytest.mark.slow
def test_demo_fails_loudly_when_a_stage_breaks(tmp_path: Path) -> None:
    demo = _demo_on(
        tmp_path,
        {
            "src/train.py": (
                "def main() -> None:\n",
                "def main() -> None:\n    raise SystemExit('boom')\n",
            )
        },
    )

    result = _run_demo(demo, tmp_path / "work", "--small")

    assert result.returncode == 1
    assert "FAILED at step 2 (first_run)" in result.stderr
    assert "stage(s) failed: train" in result.stderr
    summary = json.loads((tmp_path / "work" / "summary.json").read_text(encoding="utf-8"))
    assert summary["ok"] is False and summary["failed_at"] == "step 2 (first_run)"


@pytest.mark.slow
@pytest.mark.xdist_group("demo_live")
def test_demo_stops_everything_when_the_gates_refuse_the_retrained_model(
    prepared_demo: Path, tmp_path: Path
) -> None:
    # gates for 'challenger' that no model meets: the retrain must be refused, not promoted
    # (steps 1-7 never read them: the prepared project gets them before the live part)
    work = _copy_of(prepared_demo, tmp_path / "work")
    config = work / "mlcd.yaml"
    text = config.read_text(encoding="utf-8")
    assert "gates:\n" in text
    config.write_text(
        text.replace("gates:\n", "gates:\n  challenger:\n    - roc_auc >= 0.999\n", 1),
        encoding="utf-8",
    )
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qam", "gates"],
        cwd=work,
        check=True,
    )

    result = _run_demo(DEMO, work, "--small", "--from", "8")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED at step 11 (retrain_on_drift)" in result.stderr
    assert "got refused" in result.stderr and "roc_auc >= 0.999" in result.stderr
    summary = json.loads((work / "summary.json").read_text(encoding="utf-8"))
    assert summary["ok"] is False and summary["facts"]["drift"]["detected"] is True
    pids = _started_pids(result.stdout)
    assert set(pids) == {"serve", "watch"} and all(_gone(pid) for pid in pids.values())
    # the refusal is in the audit trail and the champion stayed where it was
    shown = subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", "models", "show", "churn", "--json"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert json.loads(shown.stdout)["aliases"] == {"champion": 1}


@pytest.mark.slow
@pytest.mark.xdist_group("demo_live")
def test_ctrl_c_stops_the_server_the_demo_started(prepared_demo: Path, tmp_path: Path) -> None:
    work = _copy_of(prepared_demo, tmp_path / "demo")
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--workdir", str(work), "--small", "--from", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 600
        for line in process.stdout:  # until the server is up and the traffic step has begun
            seen.append(line)
            if "(5 production)" in line or time.monotonic() > deadline:
                break
        pids = _started_pids("".join(seen))
        assert "serve" in pids, "".join(seen)

        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, "".join(seen) + rest + errors
    assert "interrupted; stopping what the demo started" in errors
    assert f"stopping serve (pid {pids['serve']})" in rest
    assert _gone(pids["serve"])


def test_demo_goes_on_only_where_an_earlier_part_stopped(tmp_path: Path) -> None:
    # --from N needs the state an earlier --until N-1 left in the folder, and the live part
    # (server, traffic, watch) cannot be entered midway
    result = _run_demo(DEMO, tmp_path, "--small", "--from", "8", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--from 8 goes on from an earlier run with --until 7" in result.stderr
    assert "==> [" not in result.stdout  # no step ran

    result = _run_demo(DEMO, tmp_path, "--from", "9", timeout=120)
    assert result.returncode == 2 and "--from" in result.stderr
