"""The Ray executor (the `ray` extra): stage commands as Ray tasks on a local Ray instance."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.conftest import outcomes

pytest.importorskip("ray")


@pytest.mark.slow
def test_stages_run_as_ray_tasks_and_failures_block_dependents(make_project, mlcd) -> None:
    root = make_project(
        """
        stages:
          a:
            cmd: echo "$MLCD_STAGE" > a.txt
            outs: [a.txt]
          bad:
            cmd: echo 'ray worker says no' && exit 4
            outs: [bad.txt]
          after_bad:
            cmd: cat bad.txt > c.txt
            deps: [bad.txt]
            outs: [c.txt]
        """
    )

    result = mlcd(root, "run", "--executor", "ray", "--json")

    assert result.returncode == 3, result.stderr
    document = json.loads(result.stdout)
    assert outcomes(document) == {"a": "ran", "bad": "failed", "after_bad": "blocked"}
    assert (root / "a.txt").read_text() == "a\n"
    failed = next(s for s in document["stages"] if s["stage"] == "bad")
    assert failed["error"] == "command exited with code 4"
    assert (root / failed["log"]).read_text() == "ray worker says no\n"
