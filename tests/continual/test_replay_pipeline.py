"""``from_log`` stage inputs with ``replay``: production labels become versioned training windows.

A real project, the real ``mlcd run`` subprocess, the server's own log writer and feedback
table: the first run takes the labelled log as window 1; a run with nothing new restores
(same bytes, same fingerprint); new labels make window 2 the stage's fresh data and a bounded,
deterministic sample of window 1 its replay; the windows are in the store and survive gc.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlcd.digest import Digest, hash_file
from mlcd.logdata.windows import list_windows, replay_sample, window_frame
from mlcd.objects import open_object_store
from mlcd.store import Store
from tests.continual.traffic import label, log_rows
from tests.pipeline.conftest import Cli, calls, outcomes, run_json

CONFIG = """
stages:
  train:
    cmd: python count.py
    deps: [count.py]
    from_log:
      - model: churn
        path: data/fresh.parquet
        replay: {path: data/replay.parquet, size: 50, mix: per_window}
    outs: [out/counts.json]
models:
  churn: {path: models/churn, target: churned}
"""

COUNT = """
import json, pathlib
import pandas as pd
fresh = pd.read_parquet("data/fresh.parquet")
replay = pd.read_parquet("data/replay.parquet")
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/counts.json").write_text(json.dumps({
    "fresh": len(fresh), "replay": len(replay),
    "fresh_ids": sorted(fresh["request_id"]), "replay_ids": sorted(replay["request_id"]),
    "labels": sorted(set(fresh["churned"].tolist())),
}))
with open("calls.log", "a") as log:
    log.write("train\\n")
"""


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"tenure": rng.integers(0, 72, n), "charges": rng.normal(70, 20, n)})


def _counts(root: Path) -> dict[str, object]:
    return dict(json.loads((root / "out" / "counts.json").read_text()))


def test_labels_become_windows_fresh_rows_and_a_bounded_replay(
    make_project: Cli, mlcd: Cli
) -> None:
    root = make_project(CONFIG, {"count.py": COUNT})
    assert mlcd(root, "init").returncode == 0
    store = Store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    try:
        first_ids = log_rows(store, root, "churn", _frame(300, 0), prefix="a", ts=1_000.0)
        label(store, "churn", {rid: i % 2 for i, rid in enumerate(first_ids[:200])})

        run = run_json(mlcd, root)
        assert outcomes(run)["train"] == "ran"
        counts = _counts(root)
        assert counts["fresh"] == 200 and counts["replay"] == 0
        assert counts["labels"] == [0, 1]
        windows = list_windows(store, "churn", "train")
        assert [w.rows for w in windows] == [200]
        fresh_digest = hash_file(root / "data" / "fresh.parquet").hex
        assert windows[0].digest == fresh_digest

        # Nothing new: the same bytes are written (not even rewritten), the stage is up to date.
        mtime = (root / "data" / "fresh.parquet").stat().st_mtime_ns
        again = run_json(mlcd, root)
        assert outcomes(again)["train"] in ("skipped", "restored"), again
        assert (root / "data" / "fresh.parquet").stat().st_mtime_ns == mtime
        assert calls(root) == ["train"]
        # A from_log file edited by hand is written again from the store, not trusted.
        (root / "data" / "fresh.parquet").write_bytes(b"not parquet")
        repaired = run_json(mlcd, root)
        assert outcomes(repaired)["train"] in ("skipped", "restored"), repaired
        assert hash_file(root / "data" / "fresh.parquet").hex == fresh_digest
        assert calls(root) == ["train"]

        # 100 late labels for old predictions and 50 for new ones: window 2 holds exactly those.
        second_ids = log_rows(store, root, "churn", _frame(80, 1), prefix="b", ts=2_000.0)
        late = first_ids[200:300]
        label(store, "churn", {rid: 1 for rid in [*late, *second_ids[:50]]})
        label(store, "churn", {first_ids[0]: 1})  # a replaced label does not move a window
        run = run_json(mlcd, root)
        assert outcomes(run)["train"] == "ran"
        counts = _counts(root)
        assert counts["fresh"] == 150
        assert set(counts["fresh_ids"]) == {*late, *second_ids[:50]}  # type: ignore[arg-type]
        assert counts["replay"] == 50
        assert set(counts["replay_ids"]) <= set(first_ids[:200])  # type: ignore[arg-type]
        assert [w.rows for w in list_windows(store, "churn", "train")] == [200, 150]

        # The replay is the deterministic per-window sample of window 1, byte for byte.
        objects = open_object_store(str(root / ".mlcd" / "objects"), root=root)
        window_one = window_frame(objects, windows[0])
        expected = replay_sample([window_one], 50, "per_window")
        got = pd.read_parquet(root / "data" / "replay.parquet")
        assert list(got["request_id"]) == list(expected["request_id"])

        # gc keeps every window's data.
        gc = mlcd(root, "gc", "--json")
        assert gc.returncode == 0, gc.stderr
        for window in list_windows(store, "churn"):
            assert objects.has(Digest(window.digest))

        # The CLI lists them, records one by hand, and says what is wrong with bad input.
        listed = mlcd(root, "data", "windows", "churn", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [(w["role"], w["rows"]) for w in json.loads(listed.stdout)] == [
            ("train", 200),
            ("train", 150),
        ]
        window_one.drop(columns=["request_id"]).to_csv(root / "old.csv", index=False)
        added = mlcd(root, "data", "add-window", "churn", "old.csv", "--name", "v0", "--json")
        assert added.returncode == 0, added.stderr
        assert (
            json.loads(added.stdout)["role"] == "eval" and json.loads(added.stdout)["rows"] == 200
        )
        missing = mlcd(root, "data", "add-window", "churn", "nope.parquet")
        assert missing.returncode != 0 and "nope.parquet" in missing.stderr
        assert "not a file" in missing.stderr
        bad = mlcd(root, "data", "windows", "churn", "--role", "test")
        assert bad.returncode != 0 and "--role must be 'eval' or 'train'" in bad.stderr
    finally:
        store.dispose()


def test_replay_sample_is_bounded_deterministic_and_keeps_old_choices() -> None:
    old = pd.DataFrame({"request_id": [f"o{i}" for i in range(1000)], "x": range(1000)})
    new = pd.DataFrame({"request_id": [f"n{i}" for i in range(100)], "x": range(100)})
    uniform = replay_sample([old, new], 200, "uniform", seed=3)
    assert len(uniform) == 200
    assert uniform.equals(replay_sample([old, new], 200, "uniform", seed=3))
    # A reservoir: a growing history keeps the rows it had already chosen, if still small enough.
    smaller = replay_sample([old], 200, "uniform", seed=3)
    kept = set(smaller["request_id"]) & set(uniform["request_id"])
    assert kept == set(uniform["request_id"]) - set(new["request_id"])
    # per_window: the small window keeps its weight (all 100 rows), the large one the rest.
    per = replay_sample([old, new], 200, "per_window", seed=3)
    assert per["request_id"].str.startswith("n").sum() == 100
    assert per["request_id"].str.startswith("o").sum() == 100
    assert replay_sample([], 10).empty


def test_an_empty_log_gives_empty_files_with_the_metadata_columns(tmp_path: Path) -> None:
    """Before any traffic (the first `mlcd run` of a project), a from_log input is an empty
    table with the log's metadata columns and the label, not an error."""
    from mlcd.config import FromLog
    from mlcd.logdata.windows import materialize

    store = Store(f"sqlite:///{tmp_path / 'mlcd.db'}")
    objects = open_object_store(str(tmp_path / "objects"), root=tmp_path)
    try:
        spec = FromLog.model_validate(
            {"model": "churn", "path": "fresh.parquet", "replay": {"path": "replay.parquet"}}
        )
        done = materialize(
            store, objects, tmp_path, spec, label="churned", path="fresh.parquet",
            replay_path="replay.parquet",
        )  # fmt: skip
        assert done.rows == 0 and done.replay_rows == 0 and done.window is None
        fresh = pd.read_parquet(tmp_path / "fresh.parquet")
        assert list(fresh.columns) == ["request_id", "ts", "version", "churned"]
        assert pd.read_parquet(tmp_path / "replay.parquet").empty
        again = materialize(
            store, objects, tmp_path, spec, label="churned", path="fresh.parquet",
            replay_path="replay.parquet",
        )  # fmt: skip
        assert again.digest == done.digest and not again.changed
    finally:
        store.dispose()
