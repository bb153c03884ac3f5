"""Loading registered versions: by alias and number, verified, cached, from the project."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlcd
from mlcd.digest import Digest
from mlcd.errors import ObjectNotFound, UnsafeModel
from mlcd.objects import LocalObjectStore
from mlcd.registry import clear_contexts, load_model, register_from_path, set_alias
from tests.registry.fixtures import churn_frame, save_churn_model


@pytest.fixture
def registered(tmp_path: Path, open_store):  # type: ignore[no-untyped-def]
    frame = churn_frame(500)
    store = open_store(f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}")
    objects = LocalObjectStore(tmp_path / "objects")
    model = save_churn_model(tmp_path / "pkg", frame)
    version = register_from_path(store, objects, "churn", tmp_path / "pkg").version
    set_alias(store, "churn", "champion", 1)
    return store, objects, model, version, frame.drop(columns="churned")


def test_load_by_alias_gives_the_full_model_interface(tmp_path: Path, registered) -> None:
    store, objects, model, version, X = registered

    loaded = load_model("churn@champion", store=store, objects=objects, cache_dir=tmp_path / "c")

    assert (loaded.name, loaded.version, loaded.digest) == ("churn", 1, version.digest)
    assert isinstance(loaded.predict(X), np.ndarray)
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert loaded.predict_proba(X).shape == (len(X), 2)
    assert loaded.classes == [0, 1]
    assert [c.kind for c in loaded.signature.inputs] == ["numeric", "numeric", "categorical"]
    assert loaded.path == tmp_path / "c" / Digest.parse(version.digest).hex


def test_load_by_number_and_latest(tmp_path: Path, registered) -> None:
    store, objects, _model, _version, _X = registered
    for ref in ("churn/1", "churn@latest"):
        assert load_model(ref, store=store, objects=objects, cache_dir=tmp_path / "c").version == 1


def test_tampered_cache_copy_is_replaced_from_the_object_store(tmp_path: Path, registered) -> None:
    store, objects, model, _version, X = registered
    cache = tmp_path / "c"
    first = load_model("churn/1", store=store, objects=objects, cache_dir=cache)
    (first.path / "model.skops").write_bytes(b"not a model")

    again = load_model("churn/1", store=store, objects=objects, cache_dir=cache)

    assert np.array_equal(again.predict(X), model.predict(X))
    assert (again.path / "model.skops").read_bytes() != b"not a model"


def test_corrupt_stored_model_file_is_refused_naming_the_file(tmp_path: Path, registered) -> None:
    store, objects, _model, version, _X = registered
    manifest = objects.read_manifest(Digest.parse(version.digest))
    entry = next(e for e in manifest if e.path == "model.skops")
    blob = objects.path_of(entry.digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered bytes")

    with pytest.raises(UnsafeModel, match=r"file 'model\.skops' of model churn/1 is corrupt"):
        load_model("churn/1", store=store, objects=objects, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / Digest.parse(version.digest).hex).exists()


def test_missing_stored_package_says_pull(tmp_path: Path, registered) -> None:
    store, _objects, _model, _version, _X = registered
    empty = LocalObjectStore(tmp_path / "empty")

    with pytest.raises(ObjectNotFound, match="not in") as info:
        load_model("churn/1", store=store, objects=empty, cache_dir=tmp_path / "c")
    assert "mlcd pull" in (info.value.hint or "")


def test_public_load_model_uses_the_project_around_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlcd.yaml").write_text("version: 1\n")
    frame = churn_frame(300)
    model = save_churn_model(root / "models" / "model", frame)
    monkeypatch.chdir(root)
    try:
        registration = mlcd.register_model("churn", "models/model")
        assert registration.version.source == "models/model"
        from mlcd.registry import project_context

        store, _objects, _cache = project_context()
        set_alias(store, "churn", "prod", 1)

        loaded = mlcd.load_model("churn@prod")

        X = frame.drop(columns="churned").head(20)
        assert loaded.predict(X).tolist() == model.predict(X).tolist()
        assert loaded.path.is_relative_to(root / ".mlcd" / "cache" / "models")
    finally:
        clear_contexts()


def test_load_model_reads_a_relative_package_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = churn_frame(300)
    save_churn_model(tmp_path / "models" / "churn", frame)
    monkeypatch.chdir(tmp_path)

    loaded = mlcd.load_model("models/churn")

    assert loaded.name is None
    assert loaded.predict(pd.DataFrame([{"age": 30, "spend": 10.0, "plan": "a"}])).shape == (1,)
