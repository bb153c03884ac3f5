"""Reading an MLflow tracking store through the ``mlflow`` client API.

Everything is read with ``MlflowClient`` (so SQLite, PostgreSQL, MySQL and ``mlflow server``
stores all work), with two shortcuts measured to matter at 10,000 runs:

- metric histories: when the client's store is MLflow's own SQL store, the points of a page of
  runs are read in one query on that store's engine and table (``SqlMetric``), not one
  ``get_metric_history`` call per run and key (100,000 calls for 10,000 runs of 10 metrics);
  ``MLCD_MLFLOW_READ=client`` forces the per-key client calls everywhere.
- artifacts: a run whose artifact location is a local folder that does not exist has none, and
  is not asked for a listing.

Values leave this module as plain dataclasses (times in UTC epoch seconds), so nothing above
it touches an MLflow entity. MLflow errors become ``UsageError``/``TrackingError`` naming what
was being read.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlcd.errors import ConfigError, MlcdError, TrackingError, UsageError

#: A page of runs read (and then written) at a time.
PAGE = 500
#: ``MLCD_MLFLOW_READ=client`` reads metric histories key by key through the client.
READ_ENV = "MLCD_MLFLOW_READ"
#: ``(run_id, key, value, step, timestamp)``: a metric point as mlcd stores it.
Row = tuple[str, str, float, int, float]
_STATUS = {
    "RUNNING": "running",
    "SCHEDULED": "running",
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "killed",
}


@dataclass(frozen=True)
class SourceExperiment:
    """An MLflow experiment."""

    id: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRun:
    """An MLflow run as plain values (times in epoch seconds)."""

    id: str
    name: str | None
    experiment_id: str
    status: str  # mlcd's: running | finished | failed | killed
    started_at: float | None
    ended_at: float | None
    user: str | None
    params: dict[str, str]
    tags: dict[str, str]
    metric_keys: tuple[str, ...]
    artifact_uri: str | None

    @property
    def parent_id(self) -> str | None:
        """The MLflow id of the parent run (nested runs), if any."""
        return self.tags.get("mlflow.parentRunId") or None


@dataclass(frozen=True)
class LoggedModelRef:
    """An MLflow 3 logged model: its files live outside the run's artifact folder."""

    id: str
    name: str
    run_id: str
    artifact_uri: str


@dataclass(frozen=True)
class SourceVersion:
    """One version of a registered model."""

    name: str
    version: int
    source: str
    run_id: str | None
    description: str | None
    tags: dict[str, str]
    status: str
    created_at: float | None


@dataclass(frozen=True)
class SourceModel:
    """A registered model with its versions and aliases."""

    name: str
    description: str | None
    tags: dict[str, str]
    aliases: dict[str, int]
    versions: tuple[SourceVersion, ...]


def _seconds(ms: Any) -> float | None:
    return None if ms is None else int(ms) / 1000.0


@contextlib.contextmanager
def mlflow_errors(what: str, uri: str) -> Iterator[None]:
    """Turn MLflow's (and its drivers') exceptions into mlcd errors naming ``what``."""
    try:
        yield
    except MlcdError:
        raise
    except Exception as exc:
        name = type(exc).__name__
        text = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else name
        if name == "MlflowException" or "mlflow" in type(exc).__module__:
            raise TrackingError(
                f"MLflow refused {what} at {uri}: {text}",
                hint="check --tracking-uri (e.g. sqlite:///mlflow.db, http://host:5000) "
                "and that the MLflow store is reachable",
            ) from exc
        raise TrackingError(
            f"reading {what} from the MLflow store at {uri} failed: {name}: {text}",
            hint="check --tracking-uri and that the store is reachable; MLCD_DEBUG=1 shows where",
        ) from exc


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(
            "importing from MLflow needs the mlflow package installed",
            hint="pip install mlflow (any 2.10+ or 3.x release reads the store)",
        ) from exc
    return mlflow


def _local_path(uri: str | None) -> Path | None:
    """The local folder an artifact URI names, or None for a remote one."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


class MlflowSource:
    """A read-only view of one MLflow tracking (and registry) store.

    Args:
        tracking_uri: the MLflow tracking URI (``sqlite:///mlflow.db``, ``http://host:5000``,
            ``postgresql://...``, a ``./mlruns`` folder).
        registry_uri: the model registry URI (default: the tracking URI).

    Raises:
        ConfigError: mlflow is not installed.
    """

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        mlflow = _import_mlflow()
        self.uri = tracking_uri
        self._mlflow = mlflow
        with mlflow_errors("the connection", tracking_uri):
            self.client: Any = mlflow.MlflowClient(
                tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri
            )
        self._engine: Any = None
        self._engine_checked = False

    # ------------------------------------------------------------------ experiments
    def experiments(self, names: Sequence[str] = ()) -> list[SourceExperiment]:
        """The active experiments, or those named (every name must exist).

        Raises:
            UsageError: a named experiment does not exist.
        """
        found: list[SourceExperiment] = []
        with mlflow_errors("the experiments", self.uri):
            if names:
                for name in names:
                    exp = self.client.get_experiment_by_name(name)
                    if exp is None or exp.lifecycle_stage != "active":
                        known = [e.name for e in self._all_experiments()]
                        raise UsageError(
                            f"the MLflow store at {self.uri} has no experiment {name!r}",
                            hint=f"experiments there: {', '.join(known[:20]) or 'none'}",
                        )
                    found.append(SourceExperiment(str(exp.experiment_id), exp.name, dict(exp.tags)))
                return found
            return [
                SourceExperiment(str(e.experiment_id), e.name, dict(e.tags))
                for e in self._all_experiments()
            ]

    def _all_experiments(self) -> list[Any]:
        out: list[Any] = []
        token = None
        while True:
            page = self.client.search_experiments(max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    # ------------------------------------------------------------------ runs
    def count_runs(self, experiment_ids: Sequence[str]) -> int | None:
        """How many active runs the experiments hold (None when only paging could tell)."""
        engine = self._sql_engine()
        if engine is None or not experiment_ids:
            return None
        from mlflow.store.tracking.dbmodels.models import SqlRun
        from sqlalchemy import func, select

        table = SqlRun.__table__
        stmt = select(func.count()).where(
            table.c.experiment_id.in_([int(e) for e in experiment_ids]),
            table.c.lifecycle_stage == "active",
        )
        with mlflow_errors("the run count", self.uri), engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def runs(self, experiment_ids: Sequence[str], page: int = PAGE) -> Iterator[list[SourceRun]]:
        """Active runs of the experiments, oldest first, a page at a time."""
        if not experiment_ids:
            return
        token = None
        while True:
            with mlflow_errors("the runs", self.uri):
                result = self.client.search_runs(
                    list(experiment_ids),
                    max_results=page,
                    order_by=["attributes.start_time ASC"],
                    page_token=token,
                )
            yield [self._run(r) for r in result]
            token = result.token
            if not token:
                return

    def _run(self, run: Any) -> SourceRun:
        info, data = run.info, run.data
        tags = {str(k): "" if v is None else str(v) for k, v in data.tags.items()}
        return SourceRun(
            id=str(info.run_id),
            name=info.run_name or tags.get("mlflow.runName") or None,
            experiment_id=str(info.experiment_id),
            status=_STATUS.get(str(info.status), "finished"),
            started_at=_seconds(info.start_time),
            ended_at=_seconds(info.end_time),
            user=info.user_id or tags.get("mlflow.user") or None,
            params={str(k): str(v) for k, v in data.params.items()},
            tags=tags,
            metric_keys=tuple(sorted(data.metrics)),
            artifact_uri=info.artifact_uri,
        )

    # ------------------------------------------------------------------ metrics
    def _sql_engine(self) -> Any:
        """The SQLAlchemy engine of MLflow's SQL store, or None (REST, file store, forced)."""
        if not self._engine_checked:
            self._engine_checked = True
            if os.environ.get(READ_ENV, "").lower() != "client":
                try:
                    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                    store = self.client._tracking_client.store
                    if isinstance(store, SqlAlchemyStore):
                        self._engine = store.engine
                except (ImportError, AttributeError):
                    self._engine = None
        return self._engine

    def metric_rows(self, runs: Sequence[SourceRun]) -> dict[str, tuple[list[Row], list[Row]]]:
        """Every logged point of the runs' metrics, and the latest point per key.

        Returns ``{run_id: (points, latest)}`` with ``(run_id, key, value, step, timestamp)``
        rows (MLflow's run id, seconds), points ordered by key, step and time; the latest of a
        key is its highest step, then newest (``runs.log_metric_rows``' rule). NaN points are
        left out (mlcd stores finite numbers; MLflow keeps infinities as +-1.8e308).
        """
        out: dict[str, tuple[list[Row], list[Row]]] = {r.id: ([], []) for r in runs}
        wanted = [r for r in runs if r.metric_keys]
        if not wanted:
            return out
        engine = self._sql_engine()
        rows = (
            self._rows_sql(engine, [r.id for r in wanted])
            if engine is not None
            else self._rows_client(wanted)
        )
        # rows come grouped by run, then key: split them and take each key's last row
        points: list[Row] = []
        latest: list[Row] = []
        previous: Row | None = None
        for row in rows:
            if previous is None or row[0] != previous[0]:
                if previous is not None:
                    latest.append(previous)
                points, latest = out[row[0]]
            elif row[1] != previous[1]:
                latest.append(previous)
            points.append(row)
            previous = row
        if previous is not None:
            latest.append(previous)
        return out

    def _rows_sql(self, engine: Any, ids: list[str]) -> list[Row]:
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from sqlalchemy import select

        with mlflow_errors("metric histories", self.uri):
            if engine.dialect.name == "sqlite":
                # the driver's tuples are the rows already: no per-row work in Python
                marks = ", ".join("?" * len(ids))
                raw = engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    cursor.execute(
                        "SELECT run_uuid, key, value, step, timestamp / 1000.0 FROM metrics "
                        f"WHERE run_uuid IN ({marks}) AND is_nan = 0 "
                        "ORDER BY run_uuid, key, step, timestamp",
                        ids,
                    )
                    return list(cursor.fetchall())
                finally:
                    raw.close()
            table = SqlMetric.__table__
            stmt = (
                select(
                    table.c.run_uuid,
                    table.c.key,
                    table.c.value,
                    table.c.step,
                    table.c.timestamp,
                )
                .where(table.c.run_uuid.in_(ids), table.c.is_nan.is_(False))
                .order_by(table.c.run_uuid, table.c.key, table.c.step, table.c.timestamp)
            )
            with engine.connect() as conn:
                return [
                    (r, k, float(v), int(s), t / 1000.0) for r, k, v, s, t in conn.execute(stmt)
                ]

    def _rows_client(self, runs: Sequence[SourceRun]) -> list[Row]:
        rows: list[Row] = []
        for run in runs:
            for key in sorted(run.metric_keys):
                with mlflow_errors(f"metric {key!r} of run {run.id}", self.uri):
                    history = self.client.get_metric_history(run.id, key)
                rows.extend(
                    sorted(
                        (
                            (run.id, key, float(m.value), int(m.step), m.timestamp / 1000.0)
                            for m in history
                            if not math.isnan(m.value)
                        ),
                        key=lambda r: (r[3], r[4]),
                    )
                )
        return rows

    # ------------------------------------------------------------------ artifacts
    def logged_models(self, experiment_ids: Sequence[str]) -> dict[str, list[LoggedModelRef]]:
        """MLflow 3 logged models of the experiments, by the run that logged them."""
        by_run: dict[str, list[LoggedModelRef]] = {}
        search = getattr(self.client, "search_logged_models", None)
        if search is None or not experiment_ids:
            return by_run
        token = None
        while True:
            with mlflow_errors("the logged models", self.uri):
                page = search(
                    experiment_ids=list(experiment_ids), max_results=100, page_token=token
                )
            for model in page:
                if model.source_run_id:
                    by_run.setdefault(str(model.source_run_id), []).append(
                        LoggedModelRef(
                            str(model.model_id),
                            str(model.name),
                            str(model.source_run_id),
                            str(model.artifact_location),
                        )
                    )
            token = page.token
            if not token:
                return by_run

    def may_have_artifacts(self, run: SourceRun) -> bool:
        """False when the run's artifact folder is local and absent or empty (no listing)."""
        local = _local_path(run.artifact_uri)
        if local is None:
            return True
        try:
            return any(local.iterdir())
        except OSError:
            return False

    def run_artifacts(self, run: SourceRun, scratch: Path) -> Path | None:
        """A local folder holding every artifact of ``run`` (its own folder when local,
        else a download under ``scratch``), or None when it has none."""
        local = _local_path(run.artifact_uri)
        if local is not None:
            return local if self.may_have_artifacts(run) else None
        with mlflow_errors(f"the artifacts of run {run.id}", self.uri):
            if not self.client.list_artifacts(run.id):
                return None
            return Path(self.client.download_artifacts(run.id, "", str(scratch)))

    def folder(self, uri: str, scratch: Path) -> Path:
        """A local folder with the files at an artifact URI (``models:/...``, a path, s3://)."""
        local = _local_path(uri)
        if local is not None and local.is_dir():
            return local
        scratch.mkdir(parents=True, exist_ok=True)
        with mlflow_errors(f"the files at {uri}", self.uri):
            path = self._mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(scratch), tracking_uri=self.uri
            )
        return Path(path)

    # ------------------------------------------------------------------ registry
    def registered_models(self, names: Sequence[str] = ()) -> list[SourceModel]:
        """Registered models (all, or those named) with their versions, oldest version first."""
        out: list[SourceModel] = []
        with mlflow_errors("the registered models", self.uri):
            models: list[Any] = []
            token = None
            while True:
                page = self.client.search_registered_models(max_results=1000, page_token=token)
                models.extend(page)
                token = page.token
                if not token:
                    break
            wanted = set(names)
            if wanted:
                missing = wanted - {m.name for m in models}
                if missing:
                    raise UsageError(
                        f"the MLflow registry at {self.uri} has no model "
                        f"{', '.join(sorted(missing))}",
                        hint="list them with the MLflow client, or drop --model",
                    )
            for model in models:
                if wanted and model.name not in wanted:
                    continue
                versions = self._versions(model.name)
                out.append(
                    SourceModel(
                        name=str(model.name),
                        description=model.description or None,
                        tags={str(k): str(v) for k, v in (model.tags or {}).items()},
                        aliases={str(a): int(v) for a, v in (model.aliases or {}).items()},
                        versions=versions,
                    )
                )
        return out

    def _versions(self, name: str) -> tuple[SourceVersion, ...]:
        found: list[SourceVersion] = []
        token = None
        quoted = name.replace("'", "\\'")
        while True:
            page = self.client.search_model_versions(
                f"name = '{quoted}'", max_results=10_000, page_token=token
            )
            for mv in page:
                found.append(
                    SourceVersion(
                        name=str(mv.name),
                        version=int(mv.version),
                        source=str(mv.source or ""),
                        run_id=str(mv.run_id) if mv.run_id else None,
                        description=mv.description or None,
                        tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
                        status=str(mv.status or "READY"),
                        created_at=_seconds(mv.creation_timestamp),
                    )
                )
            token = page.token
            if not token:
                break
        return tuple(sorted(found, key=lambda v: v.version))

    def version_uri(self, version: SourceVersion) -> str:
        """Where a version's files are (its download URI)."""
        with mlflow_errors(f"model {version.name} version {version.version}", self.uri):
            return str(
                self.client.get_model_version_download_uri(version.name, str(version.version))
            )
