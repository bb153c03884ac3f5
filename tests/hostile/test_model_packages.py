"""Hostile model packages: a skops file that references code is refused, and nothing runs."""

from __future__ import annotations

import functools
import operator
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlcd.errors import RegistryError, UnsafeModel
from mlcd.registry import load_model, save_model, set_alias
from mlcd.registry.flavors import get_flavor
from tests.serve.conftest import (  # noqa: F401  (fixtures used by the server test)
    Registry,
    Running,
    cancer,
    cancer_model,
    registry,
    serve,
)


def _code(marker: Path) -> str:
    """The attacker's payload: proof of execution is a file at ``marker``."""
    return f"open({str(marker)!r}, 'w').write('ran')"


def _data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    return X, (X.a > 0).astype(int)


def _pipeline_with(*funcs: Any) -> Any:
    """A fitted pipeline whose first steps call ``funcs``, attached after fitting (as an attacker
    editing a model would), so that building the exploit never runs it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = _data()
    steps: list[tuple[str, Any]] = [(f"f{i}", FunctionTransformer()) for i in range(len(funcs))]
    model = Pipeline([*steps, ("clf", LogisticRegression())]).fit(X, y)
    for (_, step), func in zip(steps, funcs, strict=True):
        step.func = func
    return model


def _sklearn_script(marker: Path) -> Any:
    from sklearn.utils._testing import assert_run_python_script_without_output

    return _pipeline_with(functools.partial(assert_run_python_script_without_output, _code(marker)))


def _numpy_measure(marker: Path) -> Any:
    from numpy.testing._private.utils import measure

    return _pipeline_with(functools.partial(measure, _code(marker), 1))


def _numpy_runstring(marker: Path) -> Any:
    from numpy.testing._private.utils import runstring

    # OrderedDict turns the frame into a dict, the globals runstring's exec needs.
    return _pipeline_with(OrderedDict, functools.partial(runstring, _code(marker)))


def _builtins_exec(marker: Path) -> Any:
    return _pipeline_with(OrderedDict, functools.partial(exec, _code(marker)))


def _builtins_eval(marker: Path) -> Any:
    return _pipeline_with(OrderedDict, functools.partial(eval, _code(marker)))


def _operator_methodcaller(marker: Path) -> Any:
    # DataFrame.to_csv(marker): an arbitrary file write, i.e. code execution one step later.
    return _pipeline_with(operator.methodcaller("to_csv", str(marker)))


def _scipy_distribution(marker: Path) -> Any:
    """A scipy distribution whose argument-parser template (exec'd when it is unpickled or
    rebuilt) carries the payload, hidden in an innocent-looking transformer parameter."""
    import copy

    import scipy.stats

    dist = copy.deepcopy(scipy.stats.norm)
    dist._parse_arg_template = _code(marker) + "\n" + dist._parse_arg_template
    model = _pipeline_with(np.abs)
    model.steps[0][1].inv_kw_args = {"prior": dist}
    return model


def _method_reference(marker: Path) -> Any:
    # A bound method of an allowed estimator is still a callable reference.
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_data()[0])
    return _pipeline_with(scaler.inverse_transform)


EXPLOITS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "sklearn _testing script runner": (
        _sklearn_script,
        "sklearn.utils._testing.assert_run_python_script_without_output",
    ),
    "numpy.testing measure": (_numpy_measure, "numpy.testing._private.utils.measure"),
    "numpy.testing runstring": (_numpy_runstring, "numpy.testing._private.utils.runstring"),
    "builtins exec": (_builtins_exec, "builtins.exec"),
    "builtins eval": (_builtins_eval, "builtins.eval"),
    "operator methodcaller": (_operator_methodcaller, "operator.methodcaller"),
    "scipy distribution template": (_scipy_distribution, "scipy.stats._continuous_distns.norm_gen"),
    "bound method": (_method_reference, "StandardScaler.inverse_transform"),
}


# Guards against code execution through a skops package that references a callable in a
# trusted-looking namespace (issue 20, item 1): loading refuses, naming the type; nothing runs.
@pytest.mark.parametrize("case", sorted(EXPLOITS))
def test_a_package_referencing_code_is_refused_and_nothing_runs(tmp_path: Path, case: str) -> None:
    build, type_name = EXPLOITS[case]
    marker = tmp_path / "pwned"
    X, _ = _data()
    save_model(build(marker), tmp_path / "pkg", sample_input=X)

    with pytest.raises(UnsafeModel) as info:
        load_model(tmp_path / "pkg").predict(X)
    assert type_name in str(info.value)
    assert "trusted=True" in (info.value.hint or "")
    assert not marker.exists()


# Guards against the refusal depending on the flag alone: with trust, the model is the user's
# responsibility (it loads); without, refusal is an UnsafeModel, which is a RegistryError.
def test_refusal_is_a_registry_error_and_trust_still_loads_a_callable(tmp_path: Path) -> None:
    model = _pipeline_with(functools.partial(np.multiply, 2.0))
    X, _ = _data()
    save_model(model, tmp_path / "pkg", sample_input=X)

    with pytest.raises(RegistryError, match=r"functools\.partial"):
        load_model(tmp_path / "pkg")
    assert load_model(tmp_path / "pkg", trusted=True).predict(X.head(3)).shape == (3,)


# Guards against the allow-list breaking ordinary models: trees, boosting, encoders, numpy
# ufuncs in a FunctionTransformer and seeded random states load without trust.
def test_common_models_load_without_trust(tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {"a": rng.normal(size=120), "b": rng.normal(size=120), "c": rng.choice(["x", "y"], 120)}
    )
    y = (X.a > 0).astype(int)
    estimators = [
        LogisticRegression(),
        HistGradientBoostingClassifier(max_iter=5),
        RandomForestClassifier(n_estimators=3, random_state=np.random.RandomState(0)),
        GradientBoostingClassifier(n_estimators=3),
        DecisionTreeClassifier(max_depth=2),
    ]
    for number, estimator in enumerate(estimators):
        pre = make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["c"]),
            (make_pipeline(FunctionTransformer(np.abs), StandardScaler()), ["a", "b"]),
        )
        model = make_pipeline(pre, estimator).fit(X, y)
        save_model(model, tmp_path / f"pkg{number}", sample_input=X)
        loaded = load_model(tmp_path / f"pkg{number}")
        assert np.array_equal(loaded.predict(X), model.predict(X)), type(estimator).__name__
    # Categorical splits (pandas category dtype) use the trees' bitsets.
    categorical = X.assign(c=X.c.astype("category"))
    model = HistGradientBoostingClassifier(max_iter=5).fit(categorical, y)
    save_model(model, tmp_path / "categorical", sample_input=categorical)
    loaded = load_model(tmp_path / "categorical")
    assert np.array_equal(loaded.predict(categorical), model.predict(categorical))


# Guards against the allow-list growing into a namespace: mlcd adds four named classes to
# skops' defaults, none a function, none from a testing module.
def test_mlcd_adds_only_four_named_classes_to_skops_defaults(tmp_path: Path) -> None:
    import importlib

    import skops.io as sio
    from sklearn.utils._testing import MinimalClassifier

    from mlcd.registry.flavors.skops_review import EXTRA_TYPES

    assert len(EXTRA_TYPES) == 4
    for name in EXTRA_TYPES:
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
        assert "test" not in name
    X, y = _data()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.skops").write_bytes(sio.dumps(MinimalClassifier().fit(X, y)))
    with pytest.raises(UnsafeModel, match=r"MinimalClassifier \(from a testing module\)"):
        get_flavor("sklearn").load(tmp_path / "pkg", {"file": "model.skops"}, trusted=False)


# Guards against a swapped-in model.yaml (issue 20, item 7): the docs say symbolic links in a
# package are refused, and model.yaml is the file that says which digests to expect.
def test_a_symlinked_model_yaml_is_refused(tmp_path: Path) -> None:
    X, _ = _data()
    save_model(_pipeline_with(np.abs), tmp_path / "pkg", sample_input=X)
    meta = tmp_path / "pkg" / "model.yaml"
    os.replace(meta, tmp_path / "elsewhere.yaml")
    os.symlink(tmp_path / "elsewhere.yaml", meta)

    with pytest.raises(UnsafeModel, match=r"model\.yaml.* is a symbolic link"):
        load_model(tmp_path / "pkg")


# Guards against a model file or folder swapped for a link to the right bytes (the target can
# change after the digest check).
def test_a_symlinked_model_file_or_folder_is_refused(tmp_path: Path) -> None:
    X, _ = _data()
    save_model(_pipeline_with(np.abs), tmp_path / "pkg", sample_input=X)
    model_file = tmp_path / "pkg" / "model.skops"
    os.replace(model_file, tmp_path / "elsewhere.skops")
    os.symlink(tmp_path / "elsewhere.skops", model_file)

    with pytest.raises(UnsafeModel, match=r"'model\.skops' in model\.yaml leaves the package"):
        load_model(tmp_path / "pkg")

    # The same bytes inside the package, reached through a linked folder.
    meta = tmp_path / "pkg" / "model.yaml"
    described = yaml.safe_load(meta.read_text())
    entry = described["files"].pop("model.skops")
    described["files"].update({"real/model.skops": entry, "sub/model.skops": entry})
    described["options"]["file"] = "sub/model.skops"
    meta.write_text(yaml.safe_dump(described))
    model_file.unlink()
    (tmp_path / "pkg" / "real").mkdir()
    os.replace(tmp_path / "elsewhere.skops", tmp_path / "pkg" / "real" / "model.skops")
    os.symlink(tmp_path / "pkg" / "real", tmp_path / "pkg" / "sub")
    with pytest.raises(UnsafeModel, match=r"'sub/model\.skops' is reached through a symbolic link"):
        load_model(tmp_path / "pkg")


def _until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# Guards against the served alias moving to a malicious version (issue 20, item 1): the server
# refuses it, reports the failed load, keeps answering with the previous version, runs nothing.
def test_the_server_keeps_the_previous_version_when_the_alias_moves_to_an_exploit(
    registry: Registry,  # noqa: F811
    serve: Callable[..., Running],  # noqa: F811
    tmp_path: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils._testing import assert_run_python_script_without_output

    X, y = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    server = serve()
    marker = tmp_path / "pwned"
    hostile = Pipeline([("pre", FunctionTransformer()), ("clf", LogisticRegression(max_iter=5000))])
    hostile.fit(X, y)
    hostile.steps[0][1].func = functools.partial(
        assert_run_python_script_without_output, _code(marker)
    )
    bad = registry.register("cancer", hostile, X.head(50), alias=None)
    set_alias(registry.store, "cancer", "champion", bad)

    holder = server.service.primary
    _until(lambda: holder.failures >= 1, "the refused load")
    assert "assert_run_python_script_without_output" in str(holder.last_error)
    metrics = server.client.get("/metrics").text
    assert (
        'mlcd_serve_model_loads_total{model="cancer",outcome="failed",role="primary",'
        f'version="{bad}"}} 1.0'
    ) in metrics
    response = server.client.post("/v1/models/cancer/predict", json=[X.iloc[0].to_dict()])
    assert response.status_code == 200 and response.json()["version"] == 1
    assert not marker.exists()


def _crafted_tree(kind: str) -> Any:
    """A fitted tree model whose first node points far past the node array."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, y = _data()
    if kind == "hist-gradient-boosting":
        model = HistGradientBoostingClassifier(max_iter=3).fit(X, y)
        model._predictors[0][0].nodes["left"][0] = 10**8
        return model
    model = (
        DecisionTreeClassifier(max_depth=3)
        if kind == "decision-tree"
        else RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0)
    ).fit(X, y)
    tree = model.tree_ if kind == "decision-tree" else model.estimators_[1].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    if kind == "decision-tree":
        nodes["left_child"][0] = 10**8
    else:
        nodes["feature"][0] = 10**6  # a column far past the input's two
    state["nodes"] = nodes
    tree.__setstate__(state)
    return model


# Guards against a crafted fitted tree (allow-listed as data) crashing the serving process:
# out-of-range node or feature indices are refused at load, before any prediction.
@pytest.mark.parametrize("kind", ["decision-tree", "random-forest", "hist-gradient-boosting"])
def test_a_tree_with_out_of_range_indices_is_refused(tmp_path: Path, kind: str) -> None:
    import subprocess
    import sys

    X, _ = _data()
    save_model(_crafted_tree(kind), tmp_path / "pkg", sample_input=X)
    script = (
        "import sys, numpy as np\n"
        "from mlcd.errors import UnsafeModel\n"
        "from mlcd.registry import load_model\n"
        "try:\n"
        "    model = load_model(sys.argv[1])\n"
        "except UnsafeModel as exc:\n"
        "    print(exc); sys.exit(0)\n"
        "model.predict(np.zeros((3, 2)))\n"
        "sys.exit(1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pkg")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "points outside the tree or past the" in done.stdout
