"""Model registry: mlcd against MLflow (SQLite backend, local artifacts), in the same run.

Cases, as in the issue:

* save a small scikit-learn model as a package and register it as a version (mlcd) against
  ``mlflow.sklearn.log_model`` (MLflow; both infer a signature from a sample);
* register 100 versions and set an alias on each (``register_from_path`` + ``set_alias``
  against ``register_model`` + ``set_registered_model_alias``);
* load a model by alias in a warm process: mlcd verifies every file's digest on each load;
  MLflow's sklearn and pyfunc loaders verify nothing. mlcd's first (cold) load, which
  fetches the package from the object store into the cache, is shown too.

MLflow runs in its own virtual environment, driven through a subprocess that prints JSON::

    python3 -m venv /work/bench-venvs/mlflow && /work/bench-venvs/mlflow/bin/pip install mlflow scikit-learn
    .venv/bin/python benchmarks/bench_registry.py [--quick] [--mlflow /work/bench-venvs/mlflow/bin/python]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report

DEFAULT_MLFLOW = "/work/bench-venvs/mlflow/bin/python"


def make_data() -> Any:
    """2,000 rows, 10 numeric features, a binary label (the same in both interpreters)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, 10)), columns=[f"f{i}" for i in range(10)])
    y = (X.f0 + 0.5 * X.f1 - X.f2 + rng.normal(0, 0.5, 2000) > 0).astype(int)
    return X, y


def make_model(X: Any, y: Any, i: int) -> Any:
    """A small scikit-learn pipeline; ``i`` varies C so that every model differs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1 + i * 0.01)).fit(X, y)


# The MLflow driver runs this same source, so both sides train identical models.
MODEL_SRC = (
    "from typing import Any\n" + inspect.getsource(make_data) + inspect.getsource(make_model)
)

MLFLOW_DRIVER = textwrap.dedent(
    """
    import json, sys, time, logging, warnings, os
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    args = json.loads(sys.argv[1])
    exec(args["model_src"])
    import mlflow, mlflow.sklearn, mlflow.pyfunc
    from mlflow import MlflowClient
    mlflow.set_tracking_uri(f"sqlite:///{args['work']}/mlflow.db")
    mlflow.set_experiment("bench")
    client = MlflowClient()
    X, y = make_data()
    out = {"version": mlflow.__version__}

    times = []
    for i in range(args["log_reps"]):
        model = make_model(X, y, i)
        with mlflow.start_run():
            start = time.perf_counter()
            info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(5))
            times.append(time.perf_counter() - start)
    out["log_model"] = times
    uri = info.model_uri

    times = []
    for i in range(args["versions"]):
        start = time.perf_counter()
        version = mlflow.register_model(uri, "bench")
        client.set_registered_model_alias("bench", "champion", version.version)
        times.append(time.perf_counter() - start)
    out["register_alias"] = times

    for name, loader in (("load_sklearn", mlflow.sklearn.load_model),
                         ("load_pyfunc", mlflow.pyfunc.load_model)):
        loader("models:/bench@champion")  # warm-up
        times = []
        for _ in range(args["load_reps"]):
            start = time.perf_counter()
            loader("models:/bench@champion")
            times.append(time.perf_counter() - start)
        out[name] = times
    print(json.dumps(out))
    """
)


def run_mlcd(work: Path, versions: int, save_reps: int, load_reps: int) -> dict[str, Any]:
    """The mlcd side, in this process."""
    from mlcd.objects import LocalObjectStore
    from mlcd.registry import load_model, register_from_path, save_model, set_alias
    from mlcd.store import Store

    store = Store(f"sqlite:///{work / 'mlcd.db'}")
    objects = LocalObjectStore(work / "objects")
    X, y = make_data()
    out: dict[str, Any] = {}

    times = []
    for i in range(save_reps):
        model = make_model(X, y, 1000 + i)
        start = time.perf_counter()
        save_model(model, work / f"save-{i}", sample_input=X.head(5))
        register_from_path(store, objects, "saved", work / f"save-{i}")
        times.append(time.perf_counter() - start)
    out["save_register"] = times

    packages = []
    for i in range(versions):  # distinct packages: the same one twice is the same version
        path = work / f"pkg-{i}"
        save_model(make_model(X, y, i), path, sample_input=X.head(5))
        packages.append(path)
    times = []
    for path in packages:
        start = time.perf_counter()
        version = register_from_path(store, objects, "bench", path).version.version
        set_alias(store, "bench", "champion", version)
        times.append(time.perf_counter() - start)
    out["register_alias"] = times

    cache = work / "cache"
    times = []
    for _ in range(max(3, load_reps // 3)):
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        load_model("bench@champion", store=store, objects=objects, cache_dir=cache)
        times.append(time.perf_counter() - start)
    out["load_cold"] = times
    load_model("bench@champion", store=store, objects=objects, cache_dir=cache)  # warm-up
    times = []
    for _ in range(load_reps):
        start = time.perf_counter()
        loaded = load_model("bench@champion", store=store, objects=objects, cache_dir=cache)
        times.append(time.perf_counter() - start)
    out["load_verified"] = times
    assert loaded.predict(X.head(3)).shape == (3,)
    store.dispose()
    return out


def run_mlflow(
    python: str, work: Path, versions: int, log_reps: int, load_reps: int
) -> dict[str, Any]:
    """The MLflow side, in its own interpreter."""
    args = {
        "work": str(work),
        "versions": versions,
        "log_reps": log_reps,
        "load_reps": load_reps,
        "model_src": MODEL_SRC,
    }
    result = subprocess.run(
        [python, "-c", MLFLOW_DRIVER, json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,
        env={**os.environ, "GIT_PYTHON_REFRESH": "quiet"},
    )
    if result.returncode != 0:
        raise SystemExit(f"MLflow driver failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--mlflow", default=DEFAULT_MLFLOW, help="python with mlflow installed")
    args = parser.parse_args()
    versions, save_reps, log_reps, load_reps = (10, 5, 2, 10) if args.quick else (100, 20, 5, 30)

    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        root = Path(tmp)
        (root / "mlcd").mkdir()
        (root / "mlflow").mkdir()
        mlcd = run_mlcd(root / "mlcd", versions, save_reps, load_reps)
        mlflow = None
        if Path(args.mlflow).exists():
            mlflow = run_mlflow(args.mlflow, root / "mlflow", versions, log_reps, load_reps)
        else:
            print(f"(no MLflow at {args.mlflow}: anchors skipped)", file=sys.stderr)

    rows = [
        ("save + register one version", "save_register", "log_model"),
        (
            f"register + set alias ({versions} versions, per version)",
            "register_alias",
            "register_alias",
        ),
        ("load by alias, warm (mlcd verified; MLflow sklearn)", "load_verified", "load_sklearn"),
        ("load by alias, warm (MLflow pyfunc)", "load_verified", "load_pyfunc"),
        ("load by alias, cold cache (mlcd fetch + verify)", "load_cold", None),
    ]
    lines = []
    for label, ours, theirs in rows:
        mine = median(mlcd[ours]) * 1000
        anchor = median(mlflow[theirs]) * 1000 if mlflow and theirs else None
        report(
            "registry",
            case=label,
            mlcd_ms=round(mine, 2),
            mlflow_ms=None if anchor is None else round(anchor, 2),
            reps=len(mlcd[ours]),
            mlflow_version=mlflow["version"] if mlflow else None,
        )
        ratio = f"{anchor / mine:.1f}x" if anchor else "–"
        anchor_text = f"{anchor:.1f}" if anchor else "–"
        lines.append(f"| {label} | {mine:.1f} | {anchor_text} | {ratio} |")
    print("\n| case | mlcd median (ms) | MLflow median (ms) | MLflow / mlcd |\n|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
