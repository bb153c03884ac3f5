"""The logging API: ``mlcd.start_run``, ``mlcd.log_metric`` and friends.

Inside a pipeline stage the run comes from the environment mlcd gives the stage process
(``MLCD_RUN_ID``, ``MLCD_STAGE``, ``MLCD_STORE``, ``MLCD_ARTIFACTS``, ``MLCD_PROJECT``); outside,
``start_run()`` creates one in the project found from the working directory. Metric calls only
append to an in-memory buffer; see ``mlcd.tracking.session`` for when it reaches the store.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mlcd.errors import ConfigError, TrackingError, UsageError
from mlcd.tracking.session import (
    Session,
    check_key,
    repository,
    shared_store,
    shared_tracking_store,
    track,
)

#: Runs opened with start_run in this process, innermost last.
_stack: list[Session] = []
#: The pipeline stage's run (from MLCD_RUN_ID), created on first use.
_stage_session: Session | None = None
_stage_lock = threading.Lock()


class ActiveRun:
    """A run started by ``start_run``; a context manager that ends it.

    Leaving the ``with`` block flushes and marks the run ``finished``, ``failed`` (an exception
    escaped) or ``killed`` (KeyboardInterrupt).
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def id(self) -> str:
        """The run id (32 hex characters)."""
        return self._session.run_id

    @property
    def name(self) -> str | None:
        """The run name, if one was given."""
        return self._session.name

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            status = "finished"
        elif issubclass(kind, KeyboardInterrupt):
            status = "killed"
        else:
            status = "failed"
        _end(self._session, status)

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, name={self.name!r})"


def _current() -> Session:
    if _stack:
        return _stack[-1]
    session = _stage_session
    if session is not None:
        return session
    return _open_stage_session()


def _open_stage_session() -> Session:
    global _stage_session
    run_id = os.environ.get("MLCD_RUN_ID")
    if not run_id:
        raise TrackingError(
            "no active run to log to",
            hint="wrap the code in 'with mlcd.start_run():', or run it as a stage with 'mlcd run'",
        )
    with _stage_lock:
        if _stage_session is None:
            root = os.environ.get("MLCD_PROJECT") or "."
            _stage_session = track(
                Session(
                    run_id,
                    store_url=os.environ.get("MLCD_STORE") or _default_store(root),
                    root=root,
                    artifacts_url=os.environ.get("MLCD_ARTIFACTS") or None,
                    stage=os.environ.get("MLCD_STAGE") or None,
                )
            )
        return _stage_session


def _default_store(root: str) -> str:
    from mlcd.layout import DEFAULT_STORE

    return DEFAULT_STORE if Path(root, ".mlcd").exists() else ""


# ---------------------------------------------------------------------- runs
def start_run(
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    project: str | os.PathLike[str] | None = None,
) -> ActiveRun:
    """Start a run in the project's store; use it as a context manager.

    Inside a pipeline stage the new run is a child of the stage's pipeline run. Started
    inside another ``start_run``, it is a child of that one.

    Args:
        name: a human name (``mlcd runs show NAME`` finds the newest run with it).
        tags: tags to set on the run at once.
        project: a folder in the project (default: the stage's project, else the working
            directory); its ``mlcd.yaml`` says where the store is.

    Returns:
        The run, whose ``id`` identifies it in ``mlcd runs``.

    Raises:
        ConfigError: ``mlcd.yaml`` is invalid (none at all: runs go to ``./.mlcd/``).
        StoreError: the store could not be opened or written.
    """
    from mlcd.tracking.git import cached_git_state

    root, config = _project(project)
    parent = _stack[-1].run_id if _stack else os.environ.get("MLCD_RUN_ID") or None
    git = cached_git_state(root)
    user = os.environ.get("MLCD_ACTOR") or _user()
    store = shared_tracking_store(config.store, root)
    given = {check_key(k, "tag"): v for k, v in (tags or {}).items()}
    all_tags = {**({"mlcd.branch": git.branch} if git.branch else {}), **given}

    def create(conn: Any) -> str:
        runs = repository(conn)
        run_id = runs.create_run(
            conn,
            name=name,
            kind="manual",
            parent_id=parent,
            git_commit=git.commit,
            git_dirty=git.dirty,
            user=user,
        )
        if all_tags:
            runs.set_tags(conn, run_id, all_tags)
        return run_id

    run_id = store.transact(create)
    session = Session(
        run_id,
        store=store,
        root=str(root),
        artifacts_url=config.artifacts,
        stage=os.environ.get("MLCD_STAGE") or None,
        owns_run=True,
        owns_store=False,
        name=name,
    )
    _stack.append(track(session))
    return ActiveRun(session)


class _Settings(NamedTuple):
    """What tracking needs of ``mlcd.yaml`` (overrides applied)."""

    store: str
    artifacts: str


#: project folder -> (root, mlcd.yaml mtime, MLCD_* overrides, settings): read once per change.
_configs: dict[str, tuple[Path, float, tuple[str, ...], _Settings]] = {}
_OVERRIDES = ("MLCD_STORE", "MLCD_ARTIFACTS", "MLCD_REMOTE")


def _project(project: str | os.PathLike[str] | None) -> tuple[Path, _Settings]:
    from mlcd.layout import CONFIG_FILE, find_root, validated_settings

    start = project if project is not None else os.environ.get("MLCD_PROJECT") or "."
    try:
        root = find_root(start)
    except ConfigError:
        if project is not None or os.environ.get("MLCD_PROJECT"):
            raise
        return _local_project()
    stamp = (root / CONFIG_FILE).stat().st_mtime
    env = tuple(os.environ.get(n, "") for n in _OVERRIDES)
    cached = _configs.get(str(root))
    if cached is not None and cached[1] == stamp and cached[2] == env:
        return root, cached[3]
    # The text validated before (same bytes, same schema code): no parsing, no pydantic.
    known = None if os.environ.get("MLCD_REMOTE") else validated_settings(root)
    if known is not None:
        settings = _Settings(
            os.environ.get("MLCD_STORE") or known["store"],
            os.environ.get("MLCD_ARTIFACTS") or known["artifacts"],
        )
    else:
        from mlcd.config import load_config

        config = load_config(root)
        settings = _Settings(config.store, config.artifacts)
    _configs[str(root)] = (root, stamp, env, settings)
    return root, settings


def _local_project() -> tuple[Path, _Settings]:
    """No ``mlcd.yaml`` anywhere up: track to ``./.mlcd/`` (like MLflow's ``./mlruns``)."""
    from mlcd.layout import DEFAULT_ARTIFACTS, DEFAULT_STORE

    root = Path.cwd()
    if str(root) not in _configs:
        sys.stderr.write(
            f"mlcd: no mlcd.yaml found; tracking to the local store {root / '.mlcd'} "
            "('mlcd init' here makes it a project that keeps these runs)\n"
        )
        (root / ".mlcd").mkdir(exist_ok=True)
        _configs[str(root)] = (root, -1.0, (), _Settings(DEFAULT_STORE, DEFAULT_ARTIFACTS))
    return root, _configs[str(root)][3]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user name in containers without a passwd entry
        return None


def end_run(status: str = "finished") -> None:
    """End the innermost run started with ``start_run`` (flushes first).

    Raises:
        UsageError: no run was started with ``start_run``, or ``status`` is not a run status.
    """
    if status not in ("finished", "failed", "killed"):
        raise UsageError(
            f"unknown run status {status!r}", hint="use 'finished', 'failed' or 'killed'"
        )
    if not _stack:
        raise UsageError("no run to end", hint="end_run() ends a run made by mlcd.start_run()")
    _end(_stack[-1], status)


def _end(session: Session, status: str) -> None:
    if session in _stack:
        _stack.remove(session)
    session.close(status)


def active_run() -> ActiveRun | None:
    """The run records go to now: the innermost ``start_run``, else the stage's run, else None."""
    if _stack:
        return ActiveRun(_stack[-1])
    if os.environ.get("MLCD_RUN_ID"):
        return ActiveRun(_current())
    return None


# ---------------------------------------------------------------------- records
def log_metric(
    key: str, value: float, step: int | None = None, timestamp: float | None = None
) -> None:
    """Record one value of a metric (buffered; written in the background within a second).

    Args:
        key: the metric name (at most 250 characters).
        value: a finite number.
        step: the training step; by default one more than this key's previous step (0 first).
        timestamp: UTC epoch seconds; by default now.

    Raises:
        UsageError: a bad name, a value that is not a finite number, or a bad step.
        TrackingError: no active run.
    """
    (_stack[-1] if _stack else _current()).log_metric(key, value, step, timestamp)


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: float | None = None
) -> None:
    """Record several metrics at the same step and time.

    Raises:
        UsageError: a bad name or value (nothing of the call is recorded after it).
        TrackingError: no active run.
    """
    _current().log_metrics(metrics, step, timestamp)


def log_param(key: str, value: Any) -> None:
    """Record a param (stored as text, and as a number when it is one).

    Raises:
        UsageError: a bad name.
        TrackingError: no active run.
    """
    _current().log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    """Record several params.

    Raises:
        UsageError: a bad name.
        TrackingError: no active run.
    """
    _current().log_params(params)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the active run.

    Raises:
        UsageError: a bad name.
        TrackingError: no active run.
    """
    _current().set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set several tags on the active run.

    Raises:
        UsageError: a bad name.
        TrackingError: no active run.
    """
    _current().set_tags(tags)


def log_artifact(path: str | os.PathLike[str], artifact_path: str | None = None) -> str:
    """Store a file or folder content-addressed and record it on the active run.

    Args:
        path: the file or folder to store.
        artifact_path: the name it is recorded under (default: its file name).

    Returns:
        The digest it is stored under (``HEX`` or ``HEX.dir``).

    Raises:
        UsageError: nothing exists at ``path``.
        TrackingError: no active run.
    """
    session = _current()
    source = Path(path)
    check_artifact_name(artifact_path or source.name)
    if source.is_dir():
        digest = session.objects().put_dir(source)
        size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    elif source.is_file():
        digest = session.objects().put_file(source)
        size = source.stat().st_size
    else:
        raise UsageError(
            f"log_artifact: no file or folder at {str(path)!r}",
            hint="write the file before logging it, or check the path",
        )
    return _record(session, artifact_path or source.name, str(digest), size)


#: Longest artifact name accepted (file systems cap a name at 255 bytes, a path near 4,096).
MAX_ARTIFACT_NAME = 1024


def check_artifact_name(name: str) -> str:
    """``name`` if it is a safe relative name for an artifact.

    Artifact names become file names when a run's artifacts are downloaded or restored, so
    they are held to the rule of every project path: relative, ``/``-separated, no ``..``.

    Raises:
        UsageError: the name is unsafe or too long.
    """
    from mlcd.layout import path_problem

    problem = path_problem(name)
    if problem is None and len(name) > MAX_ARTIFACT_NAME:
        problem = f"is {len(name)} characters long (at most {MAX_ARTIFACT_NAME})"
    if problem is not None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise UsageError(
            f"artifact name {shown!r} {problem}",
            hint="name artifacts with a relative path such as 'plots/roc.html'",
        )
    return name


def _record(session: Session, path: str, digest: str, size: int) -> str:
    from mlcd.store.records import ArtifactRef

    check_artifact_name(path)
    session.add_artifact(ArtifactRef("artifact", path, digest, size, session.stage))
    return digest


def log_figure(figure: Any, name: str) -> str:
    """Store a plotly figure (as HTML) or a matplotlib figure (as PNG) as an artifact.

    Args:
        figure: a ``plotly.graph_objects.Figure`` or a ``matplotlib.figure.Figure``.
        name: the artifact name under ``figures/``; the extension is added if missing.

    Returns:
        The digest of the stored file.

    Raises:
        UsageError: ``figure`` is neither kind.
        TrackingError: no active run.
    """
    session = _current()
    if hasattr(figure, "to_html") and hasattr(figure, "to_plotly_json"):
        data = figure.to_html(include_plotlyjs="cdn", full_html=True).encode()
        suffix = ".html"
    elif hasattr(figure, "savefig"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        data = buffer.getvalue()
        suffix = ".png"
    else:
        raise UsageError(
            f"log_figure: cannot store a {type(figure).__name__}",
            hint="pass a plotly Figure or a matplotlib Figure",
        )
    name = name if name.endswith(suffix) else name + suffix
    digest = session.objects().put_bytes(data)
    return _record(session, f"figures/{name}", str(digest), len(data))


def log_table(data: Any, name: str) -> str:
    """Store a table as a JSON artifact ``{"columns": [...], "data": [[...], ...]}``.

    Args:
        data: a pandas DataFrame, a dict of columns, or a list of row dicts.
        name: the artifact name under ``tables/``; ``.json`` is added if missing.

    Returns:
        The digest of the stored file.

    Raises:
        UsageError: ``data`` is none of those shapes, or holds values JSON cannot encode.
        TrackingError: no active run.
    """
    session = _current()
    columns: list[str]
    rows: list[list[Any]]
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        split = json.loads(data.to_json(orient="split", index=False))
        columns, rows = [str(c) for c in split["columns"]], split["data"]
    elif isinstance(data, Mapping):
        columns = [str(c) for c in data]
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise UsageError(
                f"log_table: columns of {name!r} have different lengths {sorted(lengths)}"
            )
        rows = [list(r) for r in zip(*data.values(), strict=True)]
    elif isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
        columns = list(dict.fromkeys(str(k) for r in data for k in r))
        rows = [[r.get(c) for c in columns] for r in data]
    else:
        raise UsageError(
            f"log_table: cannot store a {type(data).__name__}",
            hint="pass a DataFrame, a dict of columns, or a list of row dicts",
        )
    try:
        encoded = json.dumps({"columns": columns, "data": rows}, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"log_table: {name!r} holds values JSON cannot store: {exc}",
            hint="convert them to numbers or strings first (NaN becomes null in a DataFrame)",
        ) from exc
    name = name if name.endswith(".json") else name + ".json"
    digest = session.objects().put_bytes(encoded)
    return _record(session, f"tables/{name}", str(digest), len(encoded))


def flush() -> None:
    """Write every buffered record of this process to the store now.

    Raises:
        TrackingError: the store refused the write (records stay buffered and are retried).
    """
    sessions = list(_stack)
    if _stage_session is not None:
        sessions.append(_stage_session)
    for session in sessions:
        session.flush()


def search_runs(
    filter: str | None = None,
    order_by: str | None = None,
    limit: int = 100,
    *,
    project: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Runs of the project matching a filter (see docs/tracking.md for the language).

    Args:
        filter: e.g. ``"metrics.roc_auc > 0.9 and params.model = 'gbm'"``.
        order_by: e.g. ``"metrics.roc_auc desc"``; default newest first.
        limit: at most this many runs.
        project: a folder in the project (default: the working directory).

    Returns:
        One dict per run: attributes, ``params``, ``metrics`` (latest values) and ``tags``.

    Raises:
        FilterError: the filter or order is malformed (the message shows where).
    """
    from mlcd.tracking.query import search

    flush()
    root, config = _project(project)
    with shared_store(config.store, root).read() as conn:
        return [r.to_dict() for r in search(conn, filter, order_by, limit)]
