"""Parsing ``-S [FILE:]KEY=VALUE`` and writing it into params files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlcd.errors import UnsafePath, UsageError
from mlcd.experiments.overrides import Override, parse_overrides, write_overrides


def test_values_are_parsed_as_yaml_scalars() -> None:
    parsed = parse_overrides(
        ["train.lr=0.1", "train.epochs=5", "train.fast=true", "model=gbm", "empty="],
        "params.yaml",
    )

    assert [(o.file, o.key, o.value) for o in parsed] == [
        ("params.yaml", "train.lr", 0.1),
        ("params.yaml", "train.epochs", 5),
        ("params.yaml", "train.fast", True),
        ("params.yaml", "model", "gbm"),
        ("params.yaml", "empty", ""),
    ]


def test_a_file_prefix_names_another_params_file_and_the_last_setting_wins() -> None:
    parsed = parse_overrides(["other.yaml:a.b=3", "other.yaml:a.b=4"], "params.yaml")

    assert parsed == [Override("other.yaml", "a.b", 4)]
    assert parsed[0].label("params.yaml") == "other.yaml:a.b"


@pytest.mark.parametrize("text", ["train.lr", "=3", "train..lr=1", "other.yaml:=1"])
def test_malformed_overrides_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="-S"):
        parse_overrides([text], "params.yaml")


def test_write_overrides_edits_nested_keys_and_creates_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1\n  epochs: 3\nseed: 1\n")
    (tmp_path / "conf.json").write_text('{"a": {"b": 1}}')

    texts = write_overrides(
        tmp_path,
        parse_overrides(["train.lr=0.5", "new.key=x", "conf.json:a.b=2"], "params.yaml"),
    )

    assert yaml.safe_load(texts["params.yaml"]) == {
        "train": {"lr": 0.5, "epochs": 3},
        "seed": 1,
        "new": {"key": "x"},
    }
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["train"]["lr"] == 0.5
    assert json.loads((tmp_path / "conf.json").read_text()) == {"a": {"b": 2}}


def test_write_overrides_refuses_a_key_below_a_value(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("seed: 1\n")

    with pytest.raises(UsageError, match="'seed' is a value"):
        write_overrides(tmp_path, parse_overrides(["seed.x=2"], "params.yaml"))


def test_write_overrides_refuses_a_file_outside_the_project(tmp_path: Path) -> None:
    with pytest.raises(UnsafePath):
        write_overrides(tmp_path, parse_overrides(["../evil.yaml:a=1"], "params.yaml"))
