"""The stage graph, fingerprints and params: checked before anything runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlcd.config import parse_config
from mlcd.errors import ConfigError, UsageError
from mlcd.pipeline.dag import Dag
from mlcd.pipeline.fingerprint import param_value, stage_fingerprint, stage_params
from mlcd.pipeline.stage import OutDecl, ParamRef, StageSpec, specs_from_config


def spec(
    name: str, deps: tuple[str, ...] = (), outs: tuple[str, ...] = (), **kw: object
) -> StageSpec:
    return StageSpec(name, f"run {name}", deps=deps, outs=tuple(OutDecl(o) for o in outs), **kw)  # type: ignore[arg-type]


def test_edges_come_from_outs_and_deps_including_folders() -> None:
    dag = Dag(
        {
            "load": spec("load", outs=("data/raw",)),
            "part": spec("part", deps=("data/raw/part-1.csv",), outs=("data/part.csv",)),
            "all": spec("all", deps=("data",), outs=("report.txt",)),
        }
    )

    assert dag.upstream == {"load": set(), "part": {"load"}, "all": {"load", "part"}}
    assert dag.order == ["load", "part", "all"]


def test_order_keeps_declaration_order_between_independent_stages() -> None:
    dag = Dag({name: spec(name, outs=(f"{name}.txt",)) for name in ("zeta", "alpha", "mid")})

    assert dag.order == ["zeta", "alpha", "mid"]


def test_cycle_names_its_stages_in_data_flow_order() -> None:
    stages = {
        "one": spec("one", deps=("c",), outs=("a",)),
        "two": spec("two", deps=("a",), outs=("b",)),
        "three": spec("three", deps=("b",), outs=("c",)),
        "free": spec("free", outs=("z",)),
    }

    with pytest.raises(ConfigError, match="cycle: one -> two -> three -> one"):
        Dag(stages)


def test_stage_reading_its_own_out_is_rejected() -> None:
    with pytest.raises(ConfigError, match="stage 'a' lists 'x/y' as a dep, but it also writes it"):
        Dag({"a": spec("a", deps=("x/y",), outs=("x",))})


def test_overlapping_outs_are_rejected() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("'data/raw/x.csv' (stage 'b') is inside 'data/raw'")
    ):
        Dag({"a": spec("a", outs=("data/raw",)), "b": spec("b", outs=("data/raw/x.csv",))})


def test_metrics_file_written_by_two_stages_is_rejected() -> None:
    with pytest.raises(ConfigError, match=re.escape("'m.json' is written by both 'a' and 'b'")):
        Dag({"a": spec("a", metrics=("m.json",)), "b": spec("b", metrics=("m.json",))})


def test_missing_deps_are_all_named(tmp_path: Path) -> None:
    dag = Dag(
        {
            "a": spec("a", deps=("in.csv",), outs=("a.txt",)),
            "b": spec("b", deps=("a.txt", "other.csv"), outs=("b.txt",)),
        }
    )

    with pytest.raises(ConfigError) as error:
        dag.check_deps_exist(tmp_path)

    assert "stage 'a' needs 'in.csv'" in str(error.value)
    assert "stage 'b' needs 'other.csv'" in str(error.value)
    assert "a.txt" not in str(error.value)  # produced by a stage: fine before the first run


def test_select_adds_upstream_stages_and_rejects_unknown_names() -> None:
    dag = Dag(
        {
            "a": spec("a", outs=("a",)),
            "b": spec("b", deps=("a",), outs=("b",)),
            "c": spec("c", outs=("c",)),
        }
    )

    assert dag.select(["b"]) == ["a", "b"]
    assert dag.descendants("a") == {"b"}
    with pytest.raises(UsageError, match="no stage named 'x'"):
        dag.select(["x"])


def test_specs_resolve_paths_against_wdir_and_the_params_file(tmp_path: Path) -> None:
    config = parse_config(
        """
        params_file: conf/params.yaml
        stages:
          train:
            cmd: [python a.py, python b.py]
            wdir: sub
            deps: [../data, code.py]
            params: [lr, {extra.yaml: [depth]}]
            outs: [model, {path: cache.txt, cache: false, persist: true}]
            metrics: [m.json]
        """.replace("\n        ", "\n")
    )

    built = specs_from_config(config, tmp_path)["train"]

    assert built.cmd == "python a.py && python b.py"
    assert built.deps == ("data", "sub/code.py")
    assert built.params == (ParamRef("conf/params.yaml", "lr"), ParamRef("sub/extra.yaml", "depth"))
    assert built.outs == (OutDecl("sub/model"), OutDecl("sub/cache.txt", cache=False, persist=True))
    assert built.metrics == ("sub/m.json",)
    assert StageSpec.from_dict(built.to_dict()) == built


def test_param_lookup_by_dotted_key_and_section() -> None:
    data = {"train": {"lr": 0.1, "opt": {"name": "adam"}}, "a.b": 3}

    assert param_value(data, "train.lr") == 0.1
    assert param_value(data, "train.opt.name") == "adam"
    assert param_value(data, "a.b") == 3
    with pytest.raises(KeyError):
        param_value(data, "train.momentum")


def test_section_params_are_flattened_to_their_leaves() -> None:
    stage = spec("s", params=(ParamRef("params.yaml", "train"),))

    values = stage_params(stage, {"params.yaml": {"train": {"lr": 0.1, "opt": {"name": "adam"}}}})

    assert values == {"params.yaml": {"train.lr": 0.1, "train.opt.name": "adam"}}


def test_missing_params_file_is_a_config_error() -> None:
    stage = spec("s", params=(ParamRef("other.yaml", "x"),))

    with pytest.raises(
        ConfigError, match=re.escape("reads params from 'other.yaml', which does not exist")
    ):
        stage_params(stage, {})


def test_fingerprint_covers_inputs_but_not_the_stage_name() -> None:
    def make(name: str = "a", cmd: str = "run", env: str = "1") -> StageSpec:
        return StageSpec(name, cmd, deps=("in",), outs=(OutDecl("out"),), env={"K": env})

    deps = {"in": "0" * 64}
    params = {"params.yaml": {"lr": 0.1}}
    reference = stage_fingerprint(make(), deps, params)

    assert stage_fingerprint(make(name="renamed"), deps, params) == reference
    assert stage_fingerprint(make(), {"in": "1" * 64}, params) != reference
    assert stage_fingerprint(make(), deps, {"params.yaml": {"lr": 0.2}}) != reference
    assert stage_fingerprint(make(cmd="other"), deps, params) != reference
    assert stage_fingerprint(make(env="2"), deps, params) != reference
