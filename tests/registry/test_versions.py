"""Versions and aliases on SQLite and PostgreSQL: numbering, dedup, resolve, moves, rollback."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcd.digest import Digest
from mlcd.errors import NotFound, RegistryError, UnsafeModel, UsageError
from mlcd.objects import LocalObjectStore
from mlcd.registry import (
    delete_alias,
    describe,
    history,
    list_models,
    register_from_path,
    resolve,
    rollback,
    save_model,
    set_alias,
    tag,
)
from mlcd.store import Store, events


def _package(path: Path, slope: float) -> Path:
    from sklearn.linear_model import LinearRegression

    X = pd.DataFrame({"x": np.arange(10.0)})
    save_model(LinearRegression().fit(X, X.x * slope), path, sample_input=X)
    return path


@pytest.fixture
def registry(tmp_path: Path, store_url: str, open_store):  # type: ignore[no-untyped-def]
    store = open_store(store_url, root=tmp_path)
    objects = LocalObjectStore(tmp_path / "objects")
    return store, objects


def test_versions_are_numbered_and_same_package_is_same_version(tmp_path: Path, registry) -> None:
    store, objects = registry
    one = _package(tmp_path / "one", 1.0)
    two = _package(tmp_path / "two", 2.0)

    first = register_from_path(store, objects, "churn", one, source="models/one")
    again = register_from_path(store, objects, "churn", one)
    second = register_from_path(store, objects, "churn", two)

    assert (first.version.version, first.created) == (1, True)
    assert (again.version.version, again.created) == (1, False)
    assert (second.version.version, second.created) == (2, True)
    assert first.version.flavor == "sklearn"
    assert first.version.source == "models/one"
    assert objects.has(Digest.parse(first.version.digest))
    kinds = [e["kind"] for e in history(store, "churn")]
    assert kinds.count("version.registered") == 2


def test_tampered_package_is_not_registered(tmp_path: Path, registry) -> None:
    store, objects = registry
    package = _package(tmp_path / "pkg", 1.0)
    (package / "model.skops").write_bytes(b"evil")

    with pytest.raises(UnsafeModel, match=r"model\.skops"):
        register_from_path(store, objects, "churn", package)
    with pytest.raises(NotFound):
        describe(store, "churn")


def test_invalid_model_name_is_refused(tmp_path: Path, registry) -> None:
    store, objects = registry
    with pytest.raises(UsageError, match="invalid model name"):
        register_from_path(store, objects, "bad@name", _package(tmp_path / "p", 1.0))


def test_resolve_alias_version_and_latest(tmp_path: Path, registry) -> None:
    store, objects = registry
    register_from_path(store, objects, "churn", _package(tmp_path / "one", 1.0))
    register_from_path(store, objects, "churn", _package(tmp_path / "two", 2.0))
    set_alias(store, "churn", "champion", 1)

    assert resolve(store, "churn@champion").version == 1
    assert resolve(store, "churn/2").version == 2
    assert resolve(store, "churn@latest").version == 2
    with pytest.raises(NotFound, match="no alias 'staging'") as info:
        resolve(store, "churn@staging")
    assert "champion->1" in info.value.message
    with pytest.raises(NotFound, match="has no version 7"):
        resolve(store, "churn/7")
    with pytest.raises(NotFound, match="did you mean 'churn'"):
        resolve(store, "chrun@champion")
    with pytest.raises(UsageError, match="names a model, not a version"):
        resolve(store, "churn")
    with pytest.raises(UsageError, match="reserved"):
        set_alias(store, "churn", "latest", 1)


def test_alias_moves_are_audited_with_actor_and_reason(
    tmp_path: Path, registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, objects = registry
    monkeypatch.setenv("MLCD_ACTOR", "ci-bot")
    register_from_path(store, objects, "churn", _package(tmp_path / "one", 1.0))
    register_from_path(store, objects, "churn", _package(tmp_path / "two", 2.0))

    first = set_alias(store, "churn", "champion", 1, reason="first release")
    second = set_alias(store, "churn", "champion", 2, reason="better", report_digest="ab" * 32)

    assert (first.from_version, first.to_version) == (None, 1)
    assert (second.from_version, second.to_version) == (1, 2)
    moves = history(store, "churn", alias="champion")
    assert [(m["version"], m["from_version"], m["actor"], m["reason"]) for m in moves] == [
        (2, 1, "ci-bot", "better"),
        (1, None, "ci-bot", "first release"),
    ]
    assert moves[0]["report_digest"] == "ab" * 32
    with pytest.raises(NotFound, match="no version 9"):
        set_alias(store, "churn", "champion", 9)


def test_rollback_walks_the_alias_history_back(tmp_path: Path, registry) -> None:
    store, objects = registry
    for slope in (1.0, 2.0, 3.0):
        register_from_path(store, objects, "churn", _package(tmp_path / f"p{slope}", slope))
    for version in (1, 2, 3):
        set_alias(store, "churn", "champion", version)

    back = rollback(store, "churn", "champion", reason="v3 misbehaves")
    assert (back.from_version, back.to_version) == (3, 2)
    assert resolve(store, "churn@champion").version == 2
    assert rollback(store, "churn", "champion").to_version == 1
    with pytest.raises(RegistryError, match="no earlier version"):
        rollback(store, "churn", "champion")
    assert resolve(store, "churn@champion").version == 1
    with pytest.raises(NotFound, match="no alias 'staging' to roll back"):
        rollback(store, "churn", "staging")
    event = history(store, "churn", alias="champion")[1]
    assert (event["kind"], event["reason"]) == ("alias.rollback", "v3 misbehaves")


def test_deleting_an_alias_resets_its_history(tmp_path: Path, registry) -> None:
    store, objects = registry
    register_from_path(store, objects, "churn", _package(tmp_path / "one", 1.0))
    register_from_path(store, objects, "churn", _package(tmp_path / "two", 2.0))
    set_alias(store, "churn", "staging", 1)
    set_alias(store, "churn", "staging", 2)

    delete_alias(store, "churn", "staging")
    set_alias(store, "churn", "staging", 1)

    assert describe(store, "churn")["aliases"] == {"staging": 1}
    with pytest.raises(RegistryError, match="no earlier version"):
        rollback(store, "churn", "staging")


def test_tags_are_set_removed_and_listed(tmp_path: Path, registry) -> None:
    store, objects = registry
    register_from_path(store, objects, "churn", _package(tmp_path / "one", 1.0), tags={"team": "a"})

    assert tag(store, "churn", 1, {"stage": "qa", "team": "b"}) == {"team": "b", "stage": "qa"}
    assert tag(store, "churn", 1, remove=["stage"]) == {"team": "b"}
    listed = list_models(store)
    assert [(m["name"], m["versions"], m["latest"]) for m in listed] == [("churn", 1, 1)]
    with store.read() as conn:
        assert events.query(conn, model="churn", kind="version.tagged")[0]["version"] == 1


# ---------------------------------------------------------------- concurrency
def _register_many(url: str, root: str, paths: list[str], start: object) -> None:
    store = Store(url, root=root)
    objects = LocalObjectStore(Path(root) / "objects")
    start.wait()  # type: ignore[attr-defined]  # every worker is ready: all go at once
    for path in paths:
        register_from_path(store, objects, "churn", path)
    store.dispose()


def _concurrent_registration(tmp_path: Path, url: str, workers: int = 6, each: int = 4) -> None:
    # Every worker registers the same shared packages first (each a race on one digest),
    # then packages of its own (races on the next number).
    shared = [str(_package(tmp_path / f"shared{i}", 0.5 + i)) for i in range(3)]
    plans = [
        shared + [str(_package(tmp_path / f"w{w}-{i}", 10.0 * w + i + 1)) for i in range(each)]
        for w in range(workers)
    ]
    # The model exists already, so nothing but the registry's lock orders the workers.
    seed = Store(url, root=tmp_path)
    register_from_path(
        seed, LocalObjectStore(tmp_path / "objects"), "churn", _package(tmp_path / "seed", -1.0)
    )
    seed.dispose()
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_register_many, args=(url, str(tmp_path), plan, start)) for plan in plans
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * workers


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_registration_is_gap_free_and_unique_on_postgres(
    tmp_path: Path, pg_url: str, open_store
) -> None:
    _concurrent_registration(tmp_path, pg_url)

    store = open_store(pg_url)
    versions = describe(store, "churn")["versions"]
    assert [v["version"] for v in versions] == list(range(1, 6 * 4 + 5))
    assert len({v["digest"] for v in versions}) == len(versions)


def test_concurrent_registration_is_gap_free_and_unique_on_sqlite(
    tmp_path: Path, open_store
) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'mlcd.db'}"
    _concurrent_registration(tmp_path, url, workers=4, each=3)

    versions = describe(open_store(url), "churn")["versions"]
    assert [v["version"] for v in versions] == list(range(1, 4 * 3 + 5))
    assert len({v["digest"] for v in versions}) == len(versions)
