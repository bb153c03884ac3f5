"""``${key}`` in a stage's command: the param's value, filled in when the stage runs.

What DVC users write (``cmd: python train.py --lr ${train.lr}``) and what ``mlcd import dvc``
keeps: the key becomes a param of the stage, so editing it re-runs the stage with the new
value; ``\\${...}`` reaches the shell as ``${...}``; a key that names nothing is a clear error.
"""

from __future__ import annotations

import json

from tests.pipeline.conftest import write

CONFIG = """
stages:
  train:
    cmd: python -c "import sys; open('out.txt', 'w').write(' '.join(sys.argv[1:]))" ${train.lr} ${train.fast} \\${MLCD_STAGE}
    outs: [out.txt]
"""


def test_param_in_command_is_filled_in_and_tracked(make_project, mlcd) -> None:
    root = make_project(CONFIG, {"params.yaml": "train:\n  lr: 0.1\n  fast: true\n"})
    result = mlcd(root, "run", "--json")
    assert result.returncode == 0, result.stderr
    assert (root / "out.txt").read_text() == "0.1 true train"

    status = json.loads(mlcd(root, "status", "--json").stdout)
    assert {s["status"] for s in status["stages"]} == {"up to date"}

    write(root, {"params.yaml": "train:\n  lr: 0.2\n  fast: true\n"})
    status = json.loads(mlcd(root, "status", "--json").stdout)
    reasons = [r["message"] for s in status["stages"] for r in s["reasons"]]
    assert reasons == ["param changed: train.lr (0.1 -> 0.2)"]
    assert mlcd(root, "run").returncode == 0
    assert (root / "out.txt").read_text() == "0.2 true train"

    # Back to the first value: restored from the run cache, not run again.
    write(root, {"params.yaml": "train:\n  lr: 0.1\n  fast: true\n"})
    report = json.loads(mlcd(root, "run", "--json").stdout)
    assert [s["outcome"] for s in report["stages"]] == ["cached"]
    assert (root / "out.txt").read_text() == "0.1 true train"


def test_unknown_key_in_command_is_a_clear_error(make_project, mlcd) -> None:
    root = make_project(
        "stages:\n  train:\n    cmd: echo ${PATHX}\n    outs: [x]\n", {"params.yaml": "a: 1\n"}
    )
    result = mlcd(root, "run")
    assert result.returncode != 0
    assert "${PATHX}" in result.stderr and "$NAME" in result.stderr
    assert "Traceback" not in result.stderr
