"""Fuzz: random compositions of allowed estimators with one callable reference hidden inside."""

from __future__ import annotations

import copy
import functools
import operator
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcd.errors import UnsafeModel
from mlcd.registry.flavors import get_flavor

CASES = 200
OPTIONS = {"file": "model.skops", "format": "skops"}


def _payloads(marker: Path) -> list[tuple[str, Any]]:
    """Disallowed references, each with the name the refusal must quote."""
    import scipy.stats
    from numpy.testing._private.utils import measure, runstring
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils._testing import assert_run_python_script_without_output
    from sklearn.utils.validation import check_array

    code = f"open({str(marker)!r}, 'w').write('ran')"
    dist = copy.deepcopy(scipy.stats.norm)
    dist._parse_arg_template = code + "\n" + dist._parse_arg_template
    return [
        (
            "assert_run_python_script_without_output",
            functools.partial(assert_run_python_script_without_output, code),
        ),
        ("numpy.testing._private.utils.measure", functools.partial(measure, code, 1)),
        ("numpy.testing._private.utils.runstring", functools.partial(runstring, code)),
        ("builtins.exec", functools.partial(exec, code)),
        ("builtins.eval", eval),
        ("operator.methodcaller", operator.methodcaller("to_csv", str(marker))),
        ("operator.attrgetter", operator.attrgetter("to_csv")),
        ("functools.partial", functools.partial(np.multiply, 2.0)),
        ("StandardScaler.fit", StandardScaler().fit),
        ("scipy.stats._continuous_distns.norm_gen", dist),
        ("posix.system", __import__("os").system),
        # The one partial scikit-learn itself stores, carrying a callable in its arguments.
        (
            "operator.methodcaller",
            functools.partial(check_array, estimator=operator.methodcaller("to_csv", str(marker))),
        ),
    ]


def _leaf(rng: random.Random) -> Any:
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import (
        FunctionTransformer,
        MinMaxScaler,
        OneHotEncoder,
        StandardScaler,
    )
    from sklearn.tree import DecisionTreeClassifier

    makers: list[Callable[[], Any]] = [
        StandardScaler,
        MinMaxScaler,
        lambda: OneHotEncoder(handle_unknown="ignore", dtype=np.float32),
        lambda: LogisticRegression(C=rng.choice([0.1, 1.0, 10.0])),
        lambda: Ridge(alpha=rng.random()),
        SimpleImputer,
        lambda: PCA(n_components=1, random_state=np.random.RandomState(rng.randrange(100))),
        lambda: FunctionTransformer(np.abs),
        lambda: DecisionTreeClassifier(max_depth=2),
    ]
    return rng.choice(makers)()


def _compose(rng: random.Random, depth: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if depth == 0 or rng.random() < 0.3:
        return _leaf(rng)
    parts = [(f"s{i}", _compose(rng, depth - 1)) for i in range(rng.randint(1, 3))]
    kind = rng.choice(["pipeline", "columns", "union"])
    if kind == "pipeline":
        return Pipeline(parts)
    if kind == "columns":
        return ColumnTransformer([(name, part, [i]) for i, (name, part) in enumerate(parts)])
    return FeatureUnion(parts)


def _estimators(model: Any) -> list[Any]:
    """The model and every estimator nested in it."""
    from sklearn.base import BaseEstimator

    found = [model]
    for value in model.get_params(deep=True).values():
        if isinstance(value, BaseEstimator) and all(value is not seen for seen in found):
            found.append(value)
    return found


def _inject(rng: random.Random, model: Any, payload: Any) -> Any:
    """Hide ``payload`` at a random place of ``model``; returns the (possibly new) root."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    target = rng.choice(_estimators(model))
    place = rng.randrange(6)
    if place == 0:
        return Pipeline([("pre", FunctionTransformer(func=payload)), ("model", model)])
    if place == 1:
        return Pipeline([("model", model), ("post", FunctionTransformer(inverse_func=payload))])
    if place == 2:
        ft = FunctionTransformer(np.abs, kw_args={"where": [True, {"k": payload}]})
        return Pipeline([("pre", ft), ("model", model)])
    if place == 3:
        return ColumnTransformer([("all", model, payload)])
    if place == 4:
        return TransformedTargetRegressor(regressor=model, func=payload, inverse_func=np.exp)
    target.fitted_extra_ = {"nested": [1, (2, payload)]}  # an attribute a fit might have set
    return model


def _load(folder: Path, data: bytes) -> Any:
    folder.mkdir()
    (folder / "model.skops").write_bytes(data)
    return get_flavor("sklearn").load(folder, OPTIONS, trusted=False)


# Guards against any placement of a callable reference slipping past the review (issue 20,
# item 1): 200 seeded compositions, each refused naming the reference, none ever executed.
def test_random_compositions_with_one_callable_are_all_refused(tmp_path: Path) -> None:
    import skops.io as sio

    marker = tmp_path / "pwned"
    payloads = _payloads(marker)
    for case in range(CASES):
        rng = random.Random(case)
        model = _compose(rng, depth=3)
        _load(tmp_path / f"clean{case}", sio.dumps(model))  # the composition alone is allowed
        name, payload = payloads[case % len(payloads)]
        hostile = _inject(rng, model, payload)

        with pytest.raises(UnsafeModel) as info:
            _load(tmp_path / f"case{case}", sio.dumps(hostile))
        assert name in str(info.value), f"case {case}: {info.value}"
    assert not marker.exists()
