"""The parsed-pipeline snapshot in .mlcd/: reused while files are unchanged, never stale."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from mlcd.errors import ConfigError
from mlcd.pipeline.snapshot import load_snapshot
from tests.pipeline.conftest import write

CONFIG = """
stages:
  a:
    cmd: echo one > a.txt
    params: [lr]
    outs: [a.txt]
"""


def _age(root: Path) -> None:
    past = time.time() - 60
    for name in ("mlcd.yaml", "params.yaml"):
        os.utime(root / name, (past, past))


def test_snapshot_is_reused_without_parsing(tmp_path: Path) -> None:
    write(tmp_path, {"mlcd.yaml": CONFIG, "params.yaml": "lr: 0.1\n"})
    _age(tmp_path)
    load_snapshot(tmp_path)
    # mark the cached parse: if it comes back, the files were not parsed again
    cache = tmp_path / ".mlcd" / "pipeline.json"
    document = json.loads(cache.read_text())
    document["files"]["mlcd.yaml"]["stages"]["a"]["cmd"] = "from the cache"
    document["files"]["params:params.yaml"]["data"]["lr"] = 7
    cache.write_text(json.dumps(document))

    cached = load_snapshot(tmp_path)

    assert cached.stages["a"].cmd == "from the cache"
    assert cached.params == {"params.yaml": {"lr": 7}}


def test_same_size_edit_with_the_old_mtime_is_still_seen(tmp_path: Path) -> None:
    write(tmp_path, {"mlcd.yaml": CONFIG, "params.yaml": "lr: 0.1\n"})
    _age(tmp_path)
    load_snapshot(tmp_path)
    stamp = (tmp_path / "params.yaml").stat().st_mtime_ns

    (tmp_path / "params.yaml").write_text("lr: 0.2\n")  # same size
    os.utime(tmp_path / "params.yaml", ns=(stamp, stamp))  # and the same mtime
    (tmp_path / "mlcd.yaml").write_text(CONFIG.replace("echo one", "echo two"))

    snapshot = load_snapshot(tmp_path)

    assert snapshot.params == {"params.yaml": {"lr": 0.2}}
    assert snapshot.stages["a"].cmd == "echo two > a.txt"


def test_damaged_cache_file_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, {"mlcd.yaml": CONFIG, "params.yaml": "lr: 0.1\n"})
    load_snapshot(tmp_path)
    (tmp_path / ".mlcd" / "pipeline.json").write_text("{not json")

    assert load_snapshot(tmp_path).stages["a"].cmd == "echo one > a.txt"


def test_invalid_params_file_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, {"mlcd.yaml": CONFIG, "params.yaml": "lr: 0.1\nbad: [unclosed\n"})

    with pytest.raises(ConfigError, match=re.escape("params.yaml:3: invalid YAML in params file")):
        load_snapshot(tmp_path)


def test_params_that_do_not_survive_json_are_parsed_every_time(tmp_path: Path) -> None:
    write(tmp_path, {"mlcd.yaml": CONFIG, "params.yaml": "lr: 0.1\nwhen: 2024-01-02\n"})
    _age(tmp_path)
    load_snapshot(tmp_path)

    snapshot = load_snapshot(tmp_path)

    assert str(snapshot.params["params.yaml"]["when"]) == "2024-01-02"
    assert type(snapshot.params["params.yaml"]["when"]).__name__ == "date"
