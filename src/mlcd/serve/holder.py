"""The model holder: follows ``NAME@ALIAS``, loads and warms new versions, swaps atomically.

A background thread asks the model source which version the alias points at, every
``poll_interval_s`` and at once on :meth:`ModelHolder.refresh` (SIGHUP). A new version is
loaded and warmed up (one prediction on a plausible row) in that thread while the old one
keeps serving; then one attribute assignment swaps them, so every request sees either the
old or the new version, whole. A version that fails to load or warm up is logged, counted,
and not retried until the alias moves again or a refresh asks for it; the old one serves on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mlcd.registry.flavors.base import Predictor
from mlcd.serve.validation import InputPlan, Inputs

if TYPE_CHECKING:
    from pathlib import Path

    from mlcd.objects import ObjectStore
    from mlcd.store import Store

log = logging.getLogger("mlcd.serve")

#: Final estimators whose ``predict`` is, by its code, the arg-max of ``predict_proba``; for
#: them one call gives both (a single-row request then costs one model call, not two).
_ARGMAX_OF_PROBA = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "KNeighborsClassifier",
    }
)
#: Final estimators whose ``predict`` takes the arg-max of scores that ``predict_proba`` maps
#: through a strictly increasing function (a sigmoid as [1 - p, p], a softmax, an exp): their
#: labels are the arg-max of the probabilities wherever that maximum is strict. A row whose
#: top two probabilities are equal (rounding can make p exactly 0.5 for a score just above
#: 0) or not numbers is answered by the model's own ``predict``.
_ARGMAX_UNLESS_TIED = frozenset(
    {
        "LogisticRegression",
        "HistGradientBoostingClassifier",
        "GradientBoostingClassifier",
        "GaussianNB",
        "MultinomialNB",
        "BernoulliNB",
        "ComplementNB",
        "MLPClassifier",
    }
)


class ModelSource(Protocol):
    """Where versions come from: resolve a reference, load a version."""

    def resolve(self, ref: str) -> int:
        """The version number ``ref`` (``name@alias`` or ``name/3``) names now."""

    def load(self, name: str, version: int) -> Any:
        """The loaded model (``predict``, ``predict_proba``, ``classes``, ``signature``...)."""


class RegistrySource:
    """The model registry as a :class:`ModelSource` (store + object store + local cache)."""

    def __init__(
        self, store: Store, objects: ObjectStore, cache_dir: Path, trusted: bool = False
    ) -> None:
        self.store = store
        self.objects = objects
        self.cache_dir = cache_dir
        self.trusted = trusted

    def resolve(self, ref: str) -> int:
        from mlcd.registry import resolve

        return resolve(self.store, ref).version

    def load(self, name: str, version: int) -> Any:
        from mlcd.registry import load_model

        return load_model(
            f"{name}/{version}",
            store=self.store,
            objects=self.objects,
            cache_dir=self.cache_dir,
            trusted=self.trusted,
        )

    def reference(self, name: str, version: int) -> Any:
        """The version's stored reference profile (``reference_digest``), or None."""
        from mlcd.monitor.profile import load_profile
        from mlcd.store import models as repo

        with self.store.read() as conn:
            digest = repo.get_version(conn, name, version).get("reference_digest")
        return None if digest is None else load_profile(self.objects, digest)


@dataclass
class Served:
    """One loaded, warmed version with everything the hot path needs precomputed."""

    name: str
    version: int
    model: Any
    plan: InputPlan
    classes: list[Any] | None
    flavor: str = ""
    loaded_at: float = field(default_factory=time.time)
    _predict: Callable[[Any], Any] = field(init=False, repr=False)
    _proba: Callable[[Any], Any] | None = field(init=False, repr=False)
    _argmax: bool = field(init=False, repr=False)
    _ties_checked: bool = field(init=False, repr=False)
    _matrix: bool = field(init=False, repr=False)
    _split: tuple[Any, Any] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        predictor = getattr(self.model, "predictor", None)
        # The predictor takes rows already in the flavor's form, which the plan builds; the
        # LoadedModel's own predict would convert them again.
        self._predict = predictor.predict if predictor is not None else self.model.predict
        proba = predictor.predict_proba if predictor is not None else self.model.predict_proba
        self._proba = proba if self.classes is not None else None
        raw: Any = getattr(self.model, "raw", None)
        steps = getattr(raw, "steps", None)
        final = steps[-1][1] if steps else raw
        kind = type(final).__name__
        self._argmax = self._proba is not None and kind in _ARGMAX_OF_PROBA | _ARGMAX_UNLESS_TIED
        self._ties_checked = kind in _ARGMAX_UNLESS_TIED
        # A scikit-learn pipeline asked for labels and probabilities transforms each row
        # twice (Pipeline.predict, then Pipeline.predict_proba); its own steps, run once,
        # give the same numbers: the transforms, then the final estimator's two methods.
        self._split = None
        if (
            self._proba is not None
            and not self._argmax
            and predictor is not None
            and type(predictor) is Predictor
            and _is_sklearn_pipeline(raw)
            and len(steps or ()) > 1
            and hasattr(final, "predict_proba")
        ):
            self._split = (raw[:-1], final)
        self._matrix = False
        if self.plan.numeric_only and raw is not None:
            fast = _array_estimator(raw, self.plan.names)
            if fast is not None:
                # Same numbers, same column order, no DataFrame: scikit-learn's DataFrame
                # path costs ~10x the arithmetic of a one-row logistic regression.
                self._matrix = True
                self._split = None  # the copy takes the matrix whole, no transforms to share
                self._predict = fast.predict
                if self._proba is not None:
                    self._proba = _linear_proba(fast) or fast.predict_proba

    def predict(self, inputs: Inputs, contract: bool = True) -> tuple[Any, Any]:
        """Predictions and class probabilities (None for regressors) of validated rows;
        ``contract`` False skips the training contract (the synthetic warm-up row)."""
        import numpy as np

        if contract:
            self.plan.check_contract(inputs)
        X = inputs.matrix if self._matrix else self.plan.model_input(inputs)
        # Extreme but valid inputs (1e308) may overflow inside the model: that gives inf or
        # NaN scores (null in JSON), not an exception, whatever the process's warning filters.
        with np.errstate(all="ignore"):
            return self._predict_rows(X)

    def _predict_rows(self, X: Any) -> tuple[Any, Any]:
        import numpy as np

        if self._argmax:
            both = np.asarray(self._proba(X), dtype=np.float64)  # type: ignore[misc]
            labels = np.asarray(self.classes)[both.argmax(axis=1)]
            if self._ties_checked and both.ndim == 2 and both.shape[1] > 1:
                top = np.partition(both, -2, axis=1)[:, -2:]
                if not (top[:, 1] > top[:, 0]).all():  # a tie (or NaN): the model decides
                    labels = np.asarray(self._predict(X))
            return labels, both
        if self._split is not None:
            transforms, final = self._split
            Xt = transforms.transform(X)
            return np.asarray(final.predict(Xt)), np.asarray(
                final.predict_proba(Xt), dtype=np.float64
            )
        predictions = np.asarray(self._predict(X))
        if self._proba is None:
            return predictions, None
        result = self._proba(X)
        return predictions, None if result is None else np.asarray(result, dtype=np.float64)

    def warm_up(self) -> None:
        """Score one plausible row so the first real request pays no lazy initialisation.

        Raises:
            Exception: whatever the model raises; the holder keeps the old version then.
        """
        predictions, _proba = self.predict(self.plan.warmup_input(), contract=False)
        if len(predictions) != 1:
            raise ValueError(f"warm-up: the model returned {len(predictions)} rows for 1")


def _is_sklearn_pipeline(raw: Any) -> bool:
    """Whether ``raw`` is a scikit-learn ``Pipeline`` (checked without importing it)."""
    kind = type(raw)
    return kind.__name__ == "Pipeline" and kind.__module__.startswith("sklearn.")


def _array_estimator(raw: Any, columns: list[str]) -> Any | None:
    """A shallow copy of a scikit-learn estimator that takes the float matrix directly.

    Only when it was fitted on exactly ``columns`` in this order (so positions mean the same
    features) and its first step does not select columns by name. The copy forgets
    ``feature_names_in_``, which only serves to check names a matrix does not carry.
    """
    import copy

    if not type(raw).__module__.startswith("sklearn."):
        return None
    names = getattr(raw, "feature_names_in_", None)
    if names is None or [str(n) for n in names] != columns:
        return None
    steps = getattr(raw, "steps", None)
    first = steps[0][1] if steps else raw
    if type(first).__name__ == "ColumnTransformer" or not hasattr(first, "feature_names_in_"):
        return None
    first = copy.copy(first)
    del first.feature_names_in_
    if not steps:
        return first
    pipeline = copy.copy(raw)
    pipeline.steps = [(steps[0][0], first), *steps[1:]]
    return pipeline


def _linear_proba(estimator: Any) -> Callable[[Any], Any] | None:
    """``predict_proba`` of a fitted scikit-learn ``LogisticRegression`` without its per-call
    input checks, or None for any other estimator (or when the check below fails).

    For one row, scikit-learn's checks (array type detection, feature names, fitted state,
    finiteness) cost ~6x the arithmetic; the plan has already made the rows a float64
    matrix of the right width. The arithmetic is scikit-learn's own, in its order
    (``X @ coef_.T + intercept_``, then the logistic function, or the softmax for more
    than two classes), and it is checked at load time to give bit-identical probabilities
    to ``predict_proba`` on a few rows; otherwise the estimator's own method is used.
    Rows whose scores are not finite (NaN or infinite inputs, overflow) go to
    ``predict_proba`` too, so its errors and its numbers stay the answer there.
    """
    import numpy as np

    if type(estimator).__name__ != "LogisticRegression" or not type(
        estimator
    ).__module__.startswith("sklearn.linear_model"):
        return None
    try:
        from scipy.special import expit
        from sklearn.utils.extmath import softmax

        coef = np.asarray(estimator.coef_)
        intercept = np.asarray(estimator.intercept_)
        classes = len(estimator.classes_)
    except (AttributeError, ImportError, TypeError):
        return None
    if coef.dtype != np.float64 or coef.ndim != 2 or intercept.dtype != np.float64:
        return None
    coef_t = coef.T
    width = coef.shape[1]
    slow = estimator.predict_proba
    binary = classes <= 2

    def proba(X: Any) -> Any:
        if X.ndim != 2 or X.shape[1] != width or X.dtype != np.float64:
            return slow(X)
        scores = X @ coef_t + intercept
        if not np.isfinite(scores).all():
            return slow(X)
        if binary:
            positive = scores.reshape(-1)
            expit(positive, out=positive)
            return np.stack([1 - positive, positive], axis=1)
        return softmax(scores, copy=False)

    rng = np.random.default_rng(0)
    probe = rng.normal(size=(5, width))
    try:
        same = np.array_equal(proba(probe), slow(probe))
    except Exception:  # any surprise: keep scikit-learn's own method
        same = False
    if not same:
        log.debug("%s: scoring with predict_proba (the direct form differs)", estimator)
        return None
    return proba


def make_served(model: Any, name: str, version: int, max_rows: int) -> Served:
    """Wrap a loaded model for serving."""
    classes = getattr(model, "classes", None)
    return Served(
        name=name,
        version=version,
        model=model,
        plan=InputPlan(
            model.signature,
            max_rows=max_rows,
            contract=dict(getattr(getattr(model, "package", None), "contract", None) or {}),
        ),
        classes=None if classes is None else list(classes),
        flavor=str(getattr(model, "flavor", "")),
    )


class ModelHolder:
    """Follows one reference (``name@alias`` or ``name/3``) and holds its loaded version.

    Args:
        source: where versions come from.
        ref: what to follow.
        role: ``primary``, ``canary`` or ``shadow`` (for logs and metrics).
        max_rows: the request row limit the input plan enforces.
        poll_interval_s: how often to ask the source.
        on_load: called with (role, version, ok) after every load attempt.
        on_serve: called with (role, served) in the holder's thread once a version is loaded
            and warmed, right before it starts answering (the live gauges load its
            reference profile then); an exception there is logged, the swap goes on.
    """

    def __init__(
        self,
        source: ModelSource,
        ref: str,
        role: str = "primary",
        *,
        max_rows: int = 10_000,
        poll_interval_s: float = 5.0,
        on_load: Callable[[str, int | None, bool], None] | None = None,
        on_serve: Callable[[str, Served], None] | None = None,
    ) -> None:
        self.source = source
        self.ref = ref
        self.name = ref.split("@", 1)[0] if "@" in ref else ref.rsplit("/", 1)[0]
        self.alias = ref.split("@", 1)[1] if "@" in ref else None
        self.role = role
        self.max_rows = max_rows
        self.poll_interval_s = poll_interval_s
        self.on_load = on_load
        self.on_serve = on_serve
        self.current: Served | None = None
        self.failed_version: int | None = None
        self.last_error: str | None = None
        self.loads = 0
        self.failures = 0
        self._wake = threading.Event()
        self._force = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checked = threading.Event()

    @property
    def ready(self) -> bool:
        """Whether a version is loaded and serving."""
        return self.current is not None

    def start(self) -> None:
        """Start following in a background thread (the first load happens there too)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"mlcd-holder-{self.role}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (the loaded version stays)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def refresh(self) -> None:
        """Check the reference now and retry a version that failed before (SIGHUP)."""
        self._force = True
        self._wake.set()

    def wait_checked(self, timeout: float) -> bool:
        """Block until the first check finished (loaded or failed); for tests and start-up."""
        return self._checked.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._checked.set()
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()

    def check(self) -> bool:
        """Resolve the reference; load, warm and swap in a new version. True if swapped."""
        force, self._force = self._force, False
        try:
            version = self.source.resolve(self.ref)
        except Exception as exc:
            error = f"cannot resolve {self.ref}: {exc}"
            if error != self.last_error:  # say it once, not at every poll
                log.warning("%s (%s keeps serving)", error, self._serving())
            self.last_error = error
            return False
        if self.current is not None and self.current.version == version:
            return False
        if version == self.failed_version and not force:
            return False
        return self._load(version)

    def _load(self, version: int) -> bool:
        started = time.perf_counter()
        try:
            model = self.source.load(self.name, version)
            served = make_served(model, self.name, version, self.max_rows)
            served.warm_up()
        except Exception as exc:
            self.failures += 1
            self.failed_version = version
            self.last_error = f"{self.name}/{version} failed to load: {exc}"
            log.error("%s; %s keeps serving", self.last_error, self._serving())
            if self.on_load is not None:
                self.on_load(self.role, version, False)
            return False
        if self.on_serve is not None:
            try:
                self.on_serve(self.role, served)
            except Exception:  # monitoring of a version must not keep it from serving
                log.exception("%s/%s: preparing its live gauges failed", self.name, version)
        previous = self.current
        self.current = served  # the swap: one reference assignment, atomic for readers
        self.failed_version = None
        self.last_error = None
        self.loads += 1
        log.info(
            "%s: serving %s/%s (was %s), loaded and warmed in %.0f ms",
            self.role,
            self.name,
            version,
            previous.version if previous else "nothing",
            (time.perf_counter() - started) * 1000,
        )
        if self.on_load is not None:
            self.on_load(self.role, version, True)
        return True

    def _serving(self) -> str:
        return f"version {self.current.version}" if self.current else "no version"
