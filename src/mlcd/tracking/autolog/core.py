"""What autologging records and where: the run, params, metrics, the model package, importances.

Everything here runs inside a patched ``fit``/``train``. None of it may break the user's
training: each step goes through ``safely``, which turns a failure into one warning.

The run is found the way ``mlcd.log_metric`` finds it (the innermost ``mlcd.start_run``, else
the pipeline stage's run from ``MLCD_RUN_ID``); outside both, autologging starts a run of its
own on the first fit and leaves it to the exit hook to end (``finished``, or ``failed`` after an
uncaught exception). That run is kept off ``start_run``'s stack on purpose: a ``start_run``
the user opens later is not its child, and receives the fits made inside it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

# Kept light (no dataclasses, tempfile, csv at import): a stage's sitecustomize imports this
# in every Python the stage starts.


class Settings(NamedTuple):
    """What ``mlcd.autolog`` records (see its arguments)."""

    log_models: bool = True
    log_importances: bool = True
    log_training_metrics: bool = True
    silent: bool = False


#: None while autologging is off.
settings: Settings | None = None
#: Writes a model package, ``saver(model, path, sample_input, lineage=...)``: the registry's
#: ``save_model``, handed in by ``mlcd.autolog`` (tracking does not import the registry).
saver: Callable[..., Any] | None = None

#: Longest param value kept (an estimator's repr inside a Pipeline's params can be huge).
MAX_PARAM_CHARS = 500
#: Rows of a sparse training matrix made dense for the signature.
MAX_SPARSE_ROWS = 10_000


class Fit:
    """One outermost autologged call (a ``fit`` or a ``train``) and what it logged so far.

    ``accepts_iterations``: a boosting estimator whose inner ``train`` may log the
    per-iteration metrics.
    """

    __slots__ = ("accepts_iterations", "library", "session", "steps_logged", "suffix")

    def __init__(self, library: str, accepts_iterations: bool = False) -> None:
        self.library = library
        self.accepts_iterations = accepts_iterations
        self.session: Any = None
        self.steps_logged = False
        self.suffix: str | None = None


_local = threading.local()
#: Patched calls in progress in this process, every thread counted: the fits a grid search
#: or a forest runs in worker threads are nested calls too.
_active = 0
_active_lock = threading.Lock()
#: Set in the environment while an outermost call runs, so that worker processes it starts
#: (joblib's loky, multiprocessing), which autolog too when a stage's sitecustomize turns it
#: on, treat their fits as nested.
OWNER_ENV = "MLCD_AUTOLOG_OWNER"


def _calls() -> list[Fit | None]:
    stack: list[Fit | None] | None = getattr(_local, "calls", None)
    if stack is None:
        stack = _local.calls = []
    return stack


@contextlib.contextmanager
def guarded(library: str, accepts_iterations: bool = False) -> Iterator[Fit | None]:
    """A ``Fit`` for the outermost patched call, ``None`` for nested ones.

    A Pipeline's ``fit`` calling its steps' ``fit``, a grid search cloning and fitting its
    estimator (in this thread, in worker threads or in worker processes), LightGBM's
    ``LGBMClassifier.fit`` calling ``lightgbm.train``: only the outer call logs. The price:
    two models trained at the same time in two threads of one process log only the first.
    """
    global _active
    calls = _calls()
    with _active_lock:
        owner = os.environ.get(OWNER_ENV)
        outermost = (
            not calls
            and _active == 0
            and settings is not None
            and (not owner or owner == str(os.getpid()))
        )
        _active += 1
        if outermost:
            os.environ[OWNER_ENV] = str(os.getpid())
    fit = Fit(library, accepts_iterations) if outermost else None
    calls.append(fit)
    try:
        yield fit
    finally:
        calls.pop()
        with _active_lock:
            _active -= 1
            if outermost:
                os.environ.pop(OWNER_ENV, None)


def enclosing(library: str) -> Fit | None:
    """The boosting estimator's fit this ``train`` call runs directly inside, if it wants the
    per-iteration metrics from it (and has a run to log them to)."""
    calls = _calls()
    if len(calls) != 2:
        return None
    outer = calls[0]
    if outer is None or outer.library != library or not outer.accepts_iterations:
        return None
    if outer.session is None or outer.steps_logged:
        return None
    return outer


def warn(message: str) -> None:
    """A warning prefixed ``mlcd autolog:`` (nothing when ``silent``)."""
    if settings is not None and settings.silent:
        return
    warnings.warn(f"mlcd autolog: {message}", UserWarning, stacklevel=3)


def safely(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or None and a warning if it raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        warn(f"could not {what} ({type(exc).__name__}: {exc}); training is unaffected")
        return None


# ---------------------------------------------------------------------- the run
_own: Any = None
_own_lock = threading.Lock()


def target_session() -> Any:
    """The session of the run to log to (see the module docstring).

    Raises:
        MlcdError: no run could be started (an invalid ``mlcd.yaml``, an unreachable store).
    """
    from mlcd.tracking import api

    if api._stack:
        return api._stack[-1]
    if os.environ.get("MLCD_RUN_ID"):
        return api._current()
    global _own
    with _own_lock:
        if _own is None or _own.closed:
            run = api.start_run("autolog", tags={"mlcd.autolog": "1"})
            session = run._session
            api._stack.remove(session)  # ended by the exit hook, not the innermost run
            _own = session
            if settings is None or not settings.silent:
                sys.stderr.write(
                    f"mlcd autolog: logging to run {session.run_id[:8]} "
                    "(it ends when this process exits)\n"
                )
    return _own


def begin(fit: Fit, estimator: Any | None = None) -> None:
    """Resolve the run of ``fit`` and tag it with the library and estimator."""
    session = target_session()
    tags = {"mlcd.autolog": fit.library}
    if estimator is not None:
        tags["estimator_name"] = type(estimator).__name__
        tags["estimator_class"] = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    session.set_tags(tags)
    fit.session = session


_suffixes: dict[str, int] = {}
_suffix_lock = threading.Lock()


def suffix(fit: Fit) -> str:
    """``""`` for the first fit of a run that stores files, then ``-2``, ``-3``..."""
    if fit.suffix is None:
        with _suffix_lock:
            count = _suffixes.get(fit.session.run_id, 0) + 1
            _suffixes[fit.session.run_id] = count
        fit.suffix = "" if count == 1 else f"-{count}"
    return fit.suffix


# ---------------------------------------------------------------------- records
def _param_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def log_params(fit: Fit, params: Mapping[str, Any]) -> None:
    """Params as text (long object reprs cut), keys at most 250 characters."""
    fit.session.log_params({str(k)[:250]: _param_value(v) for k, v in params.items()})


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are finite numbers (NaN from a metric on one class is dropped)."""
    out = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number - number == 0.0:
            out[str(key)[:250]] = number
    return out


def log_metrics(fit: Fit, values: Mapping[str, Any], step: int | None = None) -> None:
    """Metrics that are finite numbers, at one step (default: the next one of each key)."""
    checked = finite_metrics(values)
    if checked:
        fit.session.log_metrics(checked, step=step)


def _record(fit: Fit, name: str, digest: str, size: int) -> None:
    from mlcd.store.runs import ArtifactRef

    fit.session.add_artifact(ArtifactRef("artifact", name, digest, size, fit.session.stage))


def training_sample(X: Any) -> Any:
    """What ``save_model`` infers the signature from: the training frame as given (a sparse
    matrix's first rows made dense; list-likes as an array)."""
    if X is None:
        return None
    if hasattr(X, "tocsr") and hasattr(X, "toarray"):  # scipy.sparse
        return X.tocsr()[:MAX_SPARSE_ROWS].toarray()
    module = type(X).__module__.partition(".")[0]
    if module in ("pandas", "numpy"):
        return X
    if hasattr(X, "to_pandas"):  # polars, pyarrow
        return X.to_pandas()
    import numpy as np

    return np.asarray(X)


def log_model(fit: Fit, model: Any, X: Any) -> None:
    """Save ``model`` as an mlcd package (signature from the training frame ``X``) and store
    it as the run's artifact ``model`` (``model-2``... for later fits in the same run)."""
    if saver is None or settings is None or not settings.log_models:
        return
    import tempfile
    from pathlib import Path

    session = fit.session
    sample = training_sample(X)
    with tempfile.TemporaryDirectory(prefix="mlcd-autolog-") as folder:
        package = Path(folder) / "model"
        saver(model, package, sample, lineage={"run_id": session.run_id})
        digest = session.objects().put_dir(package)
        size = sum(f.stat().st_size for f in package.rglob("*") if f.is_file())
    _record(fit, f"model{suffix(fit)}", str(digest), size)


def log_importances(
    fit: Fit, features: Sequence[str], columns: Mapping[str, Sequence[Any]]
) -> None:
    """A CSV table ``feature,<kind>...`` (most important first) as ``feature_importance.csv``."""
    if settings is None or not settings.log_importances or not features:
        return
    import csv
    import io

    kinds = list(columns)
    values = [[float(columns[k][i]) for k in kinds] for i in range(len(features))]
    order = sorted(range(len(features)), key=lambda i: -values[i][0] if kinds else 0.0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["feature", *kinds])
    writer.writerows([features[i], *values[i]] for i in order)
    data = buffer.getvalue().encode()
    digest = fit.session.objects().put_bytes(data)
    _record(fit, f"feature_importance{suffix(fit)}.csv", str(digest), len(data))


def feature_names(model: Any, count: int) -> list[str]:
    """The names the model was fitted with, else ``x0``, ``x1``... (as the signature names
    the columns of an array)."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) == count:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(count)]


def fit_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``X``, ``y`` and ``sample_weight`` of a scikit-learn style ``fit(X, y, ...)`` call."""
    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    return X, y, kwargs.get("sample_weight")


def log_eval_history(fit: Fit, history: Mapping[str, Mapping[str, Sequence[Any]]]) -> None:
    """Per-iteration eval metrics recorded by the library (``{data: {metric: [v0, v1...]}}``)
    as steps 0, 1... of ``<data>-<metric>``; the last step is the final value."""
    length = max((len(s) for m in history.values() for s in m.values()), default=0)
    for step in range(length):
        values = {
            f"{data}-{metric}": _first(series[step])
            for data, metrics in history.items()
            for metric, series in metrics.items()
            if step < len(series)
        }
        log_metrics(fit, values, step)
    if length:
        fit.steps_logged = True


def _first(value: Any) -> Any:
    """A value, or the mean of a (mean, std) pair from cross-validation."""
    return value[0] if isinstance(value, tuple | list) else value
