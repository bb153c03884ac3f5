"""Sweeps: many experiments over a search space, run by queue workers, under one parent run.

Three strategies:

- ``grid``: every combination of ``--grid KEY=V1,V2,...`` values.
- ``random``: N points drawn (with ``--seed``) from ``--range KEY=LOW:HIGH[:log|:int]`` and
  ``--choice KEY=A,B,...`` (a ``--grid`` list counts as a choice).
- ``optimize``: N trials of Optuna's TPE sampler on the same space, maximising or minimising
  one metric. Each trial asks the study for its params when a worker starts it, so workers on
  several machines share one study.

The sweep is a run of kind ``sweep``; each trial is an experiment run whose parent it is. Trials
wait in the experiment queue (``store.queue``) like ``exp run --queue`` entries.

Where the Optuna study lives: in the project's metadata store, apart from mlcd's own schema.
On PostgreSQL, Optuna's tables (and its own ``alembic_version``) are in the schema
``mlcd_optuna`` of the same database (the connections Optuna opens set ``search_path``), so
mlcd's migrations and schema checks never see them and every worker that reaches the database
shares the study. On SQLite, a file holds one schema, and Optuna's ``alembic_version`` would
collide with mlcd's, so the study is in ``optuna.db`` beside ``mlcd.db`` (only processes of
this machine can share a SQLite store anyway).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlcd.errors import ConfigError, UsageError
from mlcd.pipeline.plan import Services

TAG_SWEEP = "mlcd.sweep"
TAG_SWEEP_OF = "mlcd.sweep.of"
TAG_TRIAL = "mlcd.sweep.trial"
TAG_STRATEGY = "mlcd.sweep.strategy"
TAG_OBJECTIVE = "mlcd.sweep.objective"
TAG_DIRECTION = "mlcd.sweep.direction"
TAG_SPACE = "mlcd.sweep.space"
TAG_BEST = "mlcd.sweep.best"
OPTUNA_SCHEMA = "mlcd_optuna"
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class Dimension:
    """One param of the space: a list of values (``choice``) or a ``float``/``int`` range."""

    key: str
    kind: str  # choice | float | int
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dimension:
        return cls(**{**data, "values": tuple(data.get("values") or ())})

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return rng.choice(self.values)
        if self.kind == "int":
            if self.log:
                return round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
            return rng.randint(int(self.low), int(self.high))
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


def _split(option: str, text: str, example: str) -> tuple[str, str]:
    key, equals, rest = text.partition("=")
    key = key.strip()
    if not equals or not key or not rest.strip() or any(not p for p in key.split(".")):
        raise UsageError(
            f"{option} {text!r}: expected KEY=..., with a non-empty key and value",
            hint=f"for example: {example}",
        )
    return key, rest.strip()


def _values(option: str, text: str, rest: str, example: str) -> tuple[Any, ...]:
    from mlcd.experiments.overrides import _parse_value

    parts = [p.strip() for p in rest.split(",")]
    if any(not p for p in parts):
        raise UsageError(f"{option} {text!r}: an empty value in the list", hint=example)
    return tuple(_parse_value(p) for p in parts)


def parse_grid(texts: Sequence[str], option: str = "--grid") -> list[Dimension]:
    """``KEY=V1,V2,...`` (values read as YAML scalars) as choice dimensions.

    Raises:
        UsageError: no ``=``, an empty key or an empty value.
    """
    example = f"{option} train.lr=0.1,0.01"
    found = []
    for text in texts:
        key, rest = _split(option, text, example)
        found.append(Dimension(key, "choice", _values(option, text, rest, example)))
    return found


def parse_range(text: str) -> Dimension:
    """``KEY=LOW:HIGH[:log][:int]``: a float range (``int`` for whole numbers, ``log`` for a
    log-uniform scale).

    Raises:
        UsageError: a malformed range, LOW >= HIGH, or a log range that is not positive.
    """
    example = "--range train.lr=1e-4:1e-1:log (or train.depth=2:8:int)"
    key, rest = _split("--range", text, example)
    parts = [p.strip() for p in rest.split(":")]
    flags = {p.lower() for p in parts[2:]}
    if len(parts) < 2 or not flags <= {"log", "int"}:
        raise UsageError(f"--range {text!r}: expected KEY=LOW:HIGH[:log][:int]", hint=example)
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(f"--range {text!r}: LOW and HIGH must be numbers", hint=example) from None
    is_int = "int" in flags
    if is_int and not (low.is_integer() and high.is_integer()):
        raise UsageError(f"--range {text!r}: an int range needs whole numbers", hint=example)
    if not low < high:
        raise UsageError(f"--range {text!r}: LOW must be below HIGH", hint=example)
    if "log" in flags and low <= 0:
        raise UsageError(f"--range {text!r}: a log range must be above 0", hint=example)
    return Dimension(key, "int" if is_int else "float", low=low, high=high, log="log" in flags)


def parse_space(
    grid: Sequence[str] = (), ranges: Sequence[str] = (), choices: Sequence[str] = ()
) -> list[Dimension]:
    """Every dimension of the space; a key given twice is refused.

    Raises:
        UsageError: a malformed option or a repeated key.
    """
    dims = parse_grid(grid) + [parse_range(t) for t in ranges] + parse_grid(choices, "--choice")
    seen: set[str] = set()
    for dim in dims:
        if dim.key in seen:
            raise UsageError(f"the param {dim.key} is given twice in the sweep's space")
        seen.add(dim.key)
    return dims


def check_keys(root: Path, keys: Sequence[str]) -> None:
    """Refuse keys that are not params of the project (a typo would sweep nothing).

    Raises:
        UsageError: a key that no params file the stages read has.
    """
    from mlcd.pipeline.record import flat_params
    from mlcd.pipeline.snapshot import load_snapshot

    snapshot = load_snapshot(root)
    known = flat_params(snapshot.params, snapshot.params_file)
    for key in keys:
        if key not in known:
            close = sorted(k for k in known if k.split(".")[-1] == key.split(".")[-1])
            listed = ", ".join(sorted(known)[:12]) or "none"
            raise UsageError(
                f"unknown param '{key}': no params file the stages read has it",
                hint=(f"did you mean {close[0]}? " if close else "") + f"the params are: {listed}",
            )


def yaml_scalar(value: Any) -> str:
    """A value written so that ``-S`` reads it back as the same YAML scalar (``1e-05`` is a
    string to YAML 1.1; ``1.0e-05`` a float)."""
    import yaml

    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("...").strip()


def _settings(point: dict[str, Any]) -> list[str]:
    return [f"{key}={yaml_scalar(value)}" for key, value in point.items()]


def grid_points(dims: Sequence[Dimension]) -> list[dict[str, Any]]:
    """Every combination of the dimensions' values (each must be a list)."""
    ranged = [d.key for d in dims if d.kind != "choice"]
    if ranged:
        raise UsageError(
            f"a grid sweep needs lists of values, not ranges ({', '.join(ranged)})",
            hint="use --grid KEY=V1,V2; or --random N / --optimize METRIC with --range",
        )
    combos = itertools.product(*(d.values for d in dims))
    return [dict(zip([d.key for d in dims], combo, strict=True)) for combo in combos]


def random_points(dims: Sequence[Dimension], count: int, seed: int | None) -> list[dict[str, Any]]:
    """``count`` points drawn from the dimensions."""
    rng = random.Random(seed)
    return [{d.key: d.sample(rng) for d in dims} for _ in range(count)]


# ------------------------------------------------------------------ Optuna
def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError(
            "--optimize needs Optuna, which is not installed",
            hint="pip install 'mlcd[optuna]'",
        ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


_STORAGES: dict[str, Any] = {}


def optuna_storage(store: Any) -> Any:
    """Optuna's RDB storage for the project's metadata store (see the module's docstring)."""
    optuna = _optuna()
    if store.url in _STORAGES:
        return _STORAGES[store.url]
    if store.is_sqlite:
        path = Path(store.url.removeprefix("sqlite:///")).with_name("optuna.db")
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}}
        )
    else:
        from sqlalchemy import text

        def create(conn: Any) -> None:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))

        store.transact(create)
        storage = optuna.storages.RDBStorage(
            store.url,
            engine_kwargs={
                "connect_args": {"options": f"-csearch_path={OPTUNA_SCHEMA}"},
                "pool_pre_ping": True,
            },
        )
    _STORAGES[store.url] = storage
    return storage


def study_name(sweep_id: str) -> str:
    return f"mlcd-sweep-{sweep_id}"


def _distribution(optuna: Any, dim: Dimension) -> Any:
    dists = optuna.distributions
    if dim.kind == "choice":
        return dists.CategoricalDistribution(list(dim.values))
    if dim.kind == "int":
        return dists.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return dists.FloatDistribution(dim.low, dim.high, log=dim.log)


def load_study(store: Any, sweep_id: str, options: dict[str, Any] | None = None) -> Any:
    """The sweep's study, with the TPE sampler and (unless ``prune`` is off) a median pruner
    that judges no trial before ``prune_startup`` trials have finished."""
    optuna = _optuna()
    options = options or {}
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=int(options.get("prune_startup", 5)))
        if options.get("prune", True)
        else optuna.pruners.NopPruner()
    )
    return optuna.load_study(
        study_name=study_name(sweep_id),
        storage=optuna_storage(store),
        sampler=optuna.samplers.TPESampler(),
        pruner=pruner,
    )


def ask(store: Any, sweep_id: str, options: dict[str, Any]) -> tuple[Any, list[str]]:
    """A new trial of the sweep's study, and the ``-S`` settings of its params."""
    optuna = _optuna()
    dims = [Dimension.from_dict(d) for d in options["space"]]
    study = load_study(store, sweep_id, options)
    trial = study.ask({d.key: _distribution(optuna, d) for d in dims})
    return trial, _settings({d.key: trial.params[d.key] for d in dims})


def tell(
    services: Services, sweep_id: str, trial: Any, run_id: str | None, pruned: bool = False
) -> None:
    """Report a trial's objective (from its run's metrics) to the study; failed without one."""
    from mlcd.store import runs

    optuna = _optuna()
    objective = _objective_of(services, sweep_id)
    value = None
    if run_id is not None and objective:
        with services.store.read() as conn:
            value = runs.latest_metrics_of(conn, run_id).get(objective)
    study = trial.study
    if pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif value is None or not math.isfinite(float(value)):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, float(value))


def _running_run_of_this_process(conn: Any) -> str | None:
    """The pipeline run this process is running (tagged with its host and pid), if any."""
    import os
    import socket

    from sqlalchemy import select

    from mlcd.store.tables import run_tags, runs

    host = run_tags.alias("host")
    return conn.execute(
        select(runs.c.id)
        .join(run_tags, run_tags.c.run_id == runs.c.id)
        .join(host, host.c.run_id == runs.c.id)
        .where(
            runs.c.kind == "pipeline",
            runs.c.status == "running",
            run_tags.c.key == "mlcd.pid",
            run_tags.c.value == str(os.getpid()),
            host.c.key == "mlcd.host",
            host.c.value == socket.gethostname(),
        )
        .order_by(runs.c.started_at.desc())
        .limit(1)
    ).scalar()


class Pruning:
    """Pruning of a running trial: reports the intermediate values of the objective that the
    trial's stages log (``mlcd.log_metric(NAME, value, step=i)``) to the study, and says when
    the pruner judges the trial clearly worse than the others at the same step.

    Called from the worker's heartbeat thread; returns a reason to stop the trial, or None.
    """

    def __init__(self, services: Services, sweep_id: str, trial: Any) -> None:
        self.services, self.trial = services, trial
        self.metric = _objective_of(services, sweep_id)
        self.seen: set[int] = set()
        self.run_id: str | None = None

    def __call__(self) -> str | None:
        from mlcd.store import runs

        if self.metric is None:
            return None
        with self.services.store.read() as conn:
            self.run_id = self.run_id or _running_run_of_this_process(conn)
            if self.run_id is None:
                return None
            points = runs.metric_history(conn, self.run_id, self.metric)
        for point in points:
            if point.step not in self.seen and math.isfinite(point.value):
                self.seen.add(point.step)
                self.trial.report(point.value, point.step)
        if self.seen and self.trial.should_prune():
            return f"pruned at step {max(self.seen)}"
        return None


def _objective_of(services: Services, sweep_id: str) -> str | None:
    from mlcd.store import runs

    with services.store.read() as conn:
        tags = runs.tags_of(conn, sweep_id)
    objective = tags.get(TAG_OBJECTIVE) or ""
    return objective.removeprefix("metrics.") or None


# ------------------------------------------------------------------ the sweep
def objective_key(objective: str | None) -> str | None:
    """``metrics.NAME`` (or ``NAME``) as the metric name.

    Raises:
        UsageError: ``params.X`` or an empty name.
    """
    if objective is None:
        return None
    kind, dot, name = objective.partition(".")
    if (dot and kind != "metrics") or not (name if dot else kind):
        raise UsageError(
            f"the objective '{objective}' is not a metric", hint="for example: metrics.roc_auc"
        )
    return name if dot else kind


def create_sweep(
    root: Path,
    services: Services,
    *,
    strategy: str,
    dims: Sequence[Dimension],
    fixed: Sequence[str] = (),
    trials: int | None = None,
    objective: str | None = None,
    direction: str = "maximize",
    name: str | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    executor: str = "local",
    timeout_s: float | None = None,
    prune: bool = True,
    prune_startup: int = 5,
) -> dict[str, Any]:
    """Record the sweep's parent run and queue its trials; returns the sweep.

    Raises:
        UsageError: an empty space, an unknown key, a bad budget or objective.
    """
    import time
    import uuid

    from mlcd.experiments.overrides import parse_overrides
    from mlcd.experiments.queue import _check_name
    from mlcd.pipeline.record import git_state
    from mlcd.pipeline.snapshot import load_snapshot
    from mlcd.store import queue, runs

    if not dims:
        raise UsageError(
            "the sweep has no params to vary",
            hint="add --grid KEY=V1,V2 (or --range / --choice with --random or --optimize)",
        )
    if direction not in ("maximize", "minimize"):
        raise UsageError(f"--direction must be maximize or minimize (got {direction!r})")
    if trials is not None and not 1 <= trials <= MAX_TRIALS:
        raise UsageError(f"--trials must be between 1 and {MAX_TRIALS} (got {trials})")
    metric = objective_key(objective)
    snapshot = load_snapshot(root)
    fixed_keys = [
        o.label(snapshot.params_file) for o in parse_overrides(fixed, snapshot.params_file)
    ]
    check_keys(root, [d.key for d in dims] + fixed_keys)
    if strategy == "grid":
        grid = grid_points(dims)
        points: list[dict[str, Any]] | None = grid[:trials] if trials is not None else grid
    elif strategy == "random":
        if trials is None:
            raise UsageError("--random needs a number of trials: --random N")
        points = random_points(dims, trials, seed)
    elif strategy == "optimize":
        if metric is None:
            raise UsageError("--optimize needs a metric, for example: --optimize metrics.auc")
        points = None
        trials = trials or 20
    else:
        raise UsageError(f"unknown sweep strategy {strategy!r}")
    if points is not None and len(points) > MAX_TRIALS:
        raise UsageError(
            f"the grid has {len(points)} points, above {MAX_TRIALS}",
            hint="cap it with --trials N, or use --random N",
        )
    sweep_id = uuid.uuid4().hex
    name = name or f"sweep-{sweep_id[:8]}"
    count = len(points) if points is not None else int(trials or 0)
    names = [f"{name}-t{i}" for i in range(count)]
    for trial_name in [name, *names[:1]]:
        _check_name(services.store, trial_name)
    commit, dirty = git_state(root)
    options: dict[str, Any] = {"jobs": jobs, "executor": executor}
    if timeout_s is not None:
        options["deadline"] = time.time() + timeout_s
    if strategy == "optimize":
        optuna = _optuna()
        optuna.create_study(
            study_name=study_name(sweep_id),
            storage=optuna_storage(services.store),
            direction=direction,
        )
        options["space"] = [d.to_dict() for d in dims]
        options["prune"] = prune
        options["prune_startup"] = prune_startup
    tags = {
        TAG_SWEEP: "1",
        "mlcd.exp.name": name,
        TAG_STRATEGY: strategy,
        TAG_OBJECTIVE: f"metrics.{metric}" if metric else "",
        TAG_DIRECTION: direction,
        TAG_SPACE: json.dumps([d.to_dict() for d in dims]),
    }

    def work(conn: Any) -> None:
        runs.create_run(
            conn, run_id=sweep_id, name=name, kind="sweep", git_commit=commit, git_dirty=dirty
        )
        runs.set_tags(conn, sweep_id, tags)
        for index, trial_name in enumerate(names):
            settings = list(fixed) + (_settings(points[index]) if points is not None else [])
            queue.enqueue(
                conn,
                name=trial_name,
                settings=settings,
                kind="optuna" if points is None else "trial",
                base=commit,
                options=options,
                sweep_id=sweep_id,
                trial=None if points is None else index,
            )

    services.store.transact(work)
    return {"sweep_id": sweep_id, "name": name, "strategy": strategy, "trials": count}


def find_sweep(conn: Any, ref: str) -> dict[str, Any]:
    """A sweep's parent run by id, id prefix or name.

    Raises:
        NotFound: no sweep of that name or id.
    """
    from sqlalchemy import select

    from mlcd.errors import NotFound
    from mlcd.store import runs
    from mlcd.store.tables import runs as runs_table

    row = conn.execute(
        select(runs_table.c.id)
        .where(runs_table.c.kind == "sweep", runs_table.c.name == ref)
        .order_by(runs_table.c.started_at.desc())
        .limit(1)
    ).scalar()
    run = None
    try:
        run = runs.get_run(conn, row or ref)
    except NotFound:
        pass
    if run is None or run.get("kind") != "sweep":
        raise NotFound(
            f"no sweep '{ref}'",
            hint="sweeps are runs of kind sweep: mlcd runs list --filter \"kind = 'sweep'\"",
        )
    return {**run, "tags": runs.tags_of(conn, run["id"])}


def sweep_trials(conn: Any, sweep_id: str) -> dict[str, Any]:
    """A sweep and its trials (child runs), best first by its objective (newest first without
    one), with the queue's entries that have no run yet (queued, failed before running)."""
    from mlcd.experiments.show import ExperimentRow, _row, experiment_records
    from mlcd.store import queue

    sweep = find_sweep(conn, sweep_id)
    tags = sweep["tags"]
    metric = (tags.get(TAG_OBJECTIVE) or "").removeprefix("metrics.") or None
    maximize = tags.get(TAG_DIRECTION, "maximize") == "maximize"
    records = [r for r in experiment_records(conn) if r.parent_id == sweep["id"]]
    rows: list[ExperimentRow] = [_row(r) for r in records]
    if metric:
        scored = [r for r in rows if isinstance(r.metrics.get(metric), int | float)]
        rest = [r for r in rows if r not in scored]
        scored.sort(key=lambda r: float(r.metrics[metric]), reverse=maximize)
        rows = scored + rest
    with_run = {r.id for r in rows}
    pending = [
        e for e in queue.entries(conn, sweep_id=sweep["id"]) if e.get("run_id") not in with_run
    ]
    trial_of = {e["run_id"]: e.get("trial") for e in queue.entries(conn, sweep_id=sweep["id"])}
    return {
        "sweep": {
            "id": sweep["id"],
            "name": sweep.get("name"),
            "status": sweep["status"],
            "strategy": tags.get(TAG_STRATEGY),
            "objective": tags.get(TAG_OBJECTIVE) or None,
            "direction": tags.get(TAG_DIRECTION),
            "best": tags.get(TAG_BEST),
        },
        "trials": [{**r.to_dict(), "trial": trial_of.get(r.id)} for r in rows],
        "pending": [
            {"id": e["id"], "name": e["name"], "status": e["status"], "error": e["error"]}
            for e in pending
        ],
    }


def finish_sweep(services: Services, sweep_id: str) -> dict[str, Any]:
    """End the sweep's parent run: its best trial tagged, the best objective logged on it."""
    from mlcd.store import runs

    with services.store.read() as conn:
        shown = sweep_trials(conn, sweep_id)
    metric = (shown["sweep"]["objective"] or "").removeprefix("metrics.") or None
    finished = [t for t in shown["trials"] if t["status"] == "finished"]
    best = next((t for t in finished if metric and metric in t["metrics"]), None)

    def work(conn: Any) -> None:
        if best is not None and metric:
            runs.set_tags(conn, sweep_id, {TAG_BEST: best["id"]})
            runs.log_metrics(conn, sweep_id, [runs.MetricPoint(metric, best["metrics"][metric])])
        runs.end_run(conn, sweep_id, "finished" if finished else "failed")

    services.store.transact(work)
    with services.store.read() as conn:
        return sweep_trials(conn, sweep_id)
