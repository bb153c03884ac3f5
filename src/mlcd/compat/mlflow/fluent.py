"""MLflow's fluent tracking calls (``mlflow.start_run``, ``mlflow.log_metric``...) on mlcd runs.

Differences worth knowing, all on purpose:

- runs go to the mlcd project around the working folder (or ``./.mlcd``), whatever
  ``set_tracking_uri`` says; the experiment is the run's ``mlflow.experiment_name`` tag.
- ``log_metric`` without a step takes the key's next step (MLflow logs step 0 every time);
  ``timestamp`` is MLflow's milliseconds.
- a logging call with no active run starts one, as MLflow does; it ends when the process
  exits (``finished``, or ``failed`` after an uncaught exception).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.compat.errors import UnsupportedCall
from mlcd.errors import UsageError
from mlcd.tracking import api

EXPERIMENT_TAG = "mlflow.experiment_name"
_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
_state: dict[str, Any] = {"experiment": "Default", "tracking_uri": None}


@dataclass(frozen=True)
class Experiment:
    """What ``set_experiment`` returns: the experiment's name doubles as its id."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def experiment_id(self) -> str:
        """The experiment's id (its name: mlcd keeps experiments as a run tag)."""
        return self.name

    @property
    def lifecycle_stage(self) -> str:
        return "active"


@dataclass(frozen=True)
class RunInfo:
    """The ``run.info`` fields scripts read."""

    run_id: str
    run_name: str | None
    experiment_id: str
    status: str = "RUNNING"

    @property
    def run_uuid(self) -> str:
        return self.run_id

    @property
    def artifact_uri(self) -> str:
        return f"runs:/{self.run_id}"


class ActiveRun:
    """What ``start_run`` returns: ``.info.run_id``, and a context manager that ends the run."""

    def __init__(self, run: api.ActiveRun, experiment: str) -> None:
        self._run = run
        self.info = RunInfo(run.id, run.name, experiment)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._run.__exit__(kind, None, None)

    def __repr__(self) -> str:
        return f"<ActiveRun: run_id={self.info.run_id!r}, run_name={self.info.run_name!r}>"


def _unsupported_argument(call: str, name: str, hint: str | None = None) -> UnsupportedCall:
    return UnsupportedCall(f"{call}({name}=...)", hint=hint)


# ---------------------------------------------------------------------- configuration
def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Accepted and remembered; runs still go to the mlcd project (see the module notes)."""
    _state["tracking_uri"] = os.fspath(uri)


def get_tracking_uri() -> str:
    """The URI given to ``set_tracking_uri``, else ``mlcd``."""
    return str(_state["tracking_uri"] or "mlcd")


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Make later runs belong to this experiment (a tag on each run)."""
    name = experiment_name or experiment_id
    if not name:
        raise UsageError(
            "set_experiment() needs experiment_name or experiment_id",
            hint="mlflow.set_experiment('my-experiment')",
        )
    _state["experiment"] = str(name)
    return Experiment(str(name))


def get_experiment_by_name(name: str) -> Experiment:
    """The experiment called ``name`` (every name exists: it is a tag)."""
    return Experiment(name)


# ---------------------------------------------------------------------- runs
def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run (a child of the active one with ``nested=True``), as ``mlflow.start_run``.

    Raises:
        UsageError: a run is active and ``nested`` is False (MLflow refuses that too).
        UnsupportedCall: ``run_id`` (resuming a run) or a ``parent_run_id`` that is not the
            active run.
    """
    if run_id is not None:
        raise _unsupported_argument(
            "mlflow.start_run", "run_id", "mlcd runs are not resumed: start a new run"
        )
    current = api.active_run()
    stage_run = os.environ.get("MLCD_RUN_ID")
    if current is not None and not nested and current.id != stage_run:
        raise UsageError(
            f"Run with UUID {current.id} is already active. To start a nested run, call "
            "start_run with nested=True",
            hint="end it with mlflow.end_run(), or pass nested=True",
        )
    if parent_run_id is not None and (current is None or current.id != parent_run_id):
        raise _unsupported_argument(
            "mlflow.start_run", "parent_run_id", "nest the run inside its parent's start_run"
        )
    experiment = str(experiment_id or _state["experiment"])
    all_tags = {str(k): v for k, v in (tags or {}).items()}
    all_tags[EXPERIMENT_TAG] = experiment
    if run_name:
        all_tags.setdefault("mlflow.runName", run_name)
    if description:
        all_tags.setdefault("mlflow.note.content", description)
    return ActiveRun(api.start_run(name=run_name, tags=all_tags), experiment)


def end_run(status: str = "FINISHED") -> None:
    """End the active run (``FINISHED``, ``FAILED`` or ``KILLED``); no run: nothing happens."""
    if api.active_run() is None:
        return
    api.end_run(_STATUS.get(str(status).upper(), "finished"))


def active_run() -> ActiveRun | None:
    """The active run, or None."""
    run = api.active_run()
    return None if run is None else ActiveRun(run, str(_state["experiment"]))


def _ensure_run(run_id: str | None = None, call: str = "") -> api.ActiveRun:
    """The active run (started if there is none, as MLflow's fluent API does)."""
    current = api.active_run()
    if current is None:
        start_run()
        current = api.active_run()
    assert current is not None
    if run_id is not None and run_id != current.id:
        raise _unsupported_argument(call, "run_id", "log from inside the run's start_run block")
    return current


# ---------------------------------------------------------------------- records
def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Record a param; returns the value, as MLflow does."""
    _ensure_run()
    api.log_param(key, value)
    return value


def log_params(
    params: Mapping[str, Any], synchronous: bool | None = None, run_id: str | None = None
) -> None:
    """Record several params."""
    _ensure_run(run_id, "mlflow.log_params")
    api.log_params(params)


def _seconds(timestamp: int | None) -> float | None:
    return None if timestamp is None else timestamp / 1000.0


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    model_id: str | None = None,
    dataset: Any = None,
) -> None:
    """Record one metric value (``timestamp`` in milliseconds, as MLflow takes it)."""
    _ensure_run(run_id, "mlflow.log_metric")
    api.log_metric(key, value, step, _seconds(timestamp))


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    model_id: str | None = None,
    dataset: Any = None,
) -> None:
    """Record several metrics at one step."""
    _ensure_run(run_id, "mlflow.log_metrics")
    api.log_metrics(metrics, step, _seconds(timestamp))


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    """Set a tag on the active run."""
    _ensure_run()
    api.set_tag(key, value)


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    """Set several tags."""
    _ensure_run()
    api.set_tags(tags)


def _artifact_name(artifact_path: str | None, name: str) -> str:
    return f"{artifact_path.strip('/')}/{name}" if artifact_path else name


def log_artifact(
    local_path: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    """Store a file as an artifact under ``artifact_path/`` (its name kept)."""
    _ensure_run(run_id, "mlflow.log_artifact")
    source = Path(local_path)
    api.log_artifact(source, _artifact_name(artifact_path, source.name))


def log_artifacts(
    local_dir: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    """Store every file under ``local_dir`` as artifacts under ``artifact_path/``.

    Raises:
        UsageError: ``local_dir`` is not a folder.
    """
    _ensure_run(run_id, "mlflow.log_artifacts")
    folder = Path(local_dir)
    if not folder.is_dir():
        raise UsageError(
            f"log_artifacts: {os.fspath(local_dir)!r} is not a folder",
            hint="pass a folder, or use log_artifact for a single file",
        )
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        api.log_artifact(path, _artifact_name(artifact_path, path.relative_to(folder).as_posix()))


def _log_bytes(data: bytes, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mlcd-compat-") as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        api.log_artifact(path, artifact_file.strip("/"))


def log_dict(dictionary: Any, artifact_file: str, run_id: str | None = None) -> None:
    """Store a dict as JSON, or YAML when ``artifact_file`` ends in ``.yaml``/``.yml``."""
    _ensure_run(run_id, "mlflow.log_dict")
    if artifact_file.endswith((".yaml", ".yml")):
        import yaml

        text = yaml.safe_dump(dictionary, sort_keys=False)
    else:
        text = json.dumps(dictionary, indent=2)
    _log_bytes(text.encode(), artifact_file)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    """Store text as an artifact file."""
    _ensure_run(run_id, "mlflow.log_text")
    _log_bytes(text.encode(), artifact_file)


def log_figure(
    figure: Any,
    artifact_file: str,
    *,
    save_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """Store a matplotlib figure (format from the file's extension) or a plotly one (HTML).

    Raises:
        UsageError: ``figure`` is neither kind.
    """
    _ensure_run(None, "mlflow.log_figure")
    if hasattr(figure, "savefig"):
        import io

        buffer = io.BytesIO()
        fmt = Path(artifact_file).suffix.lstrip(".") or "png"
        figure.savefig(buffer, format=fmt, **dict(save_kwargs or {}))
        data = buffer.getvalue()
    elif hasattr(figure, "to_html") and hasattr(figure, "to_plotly_json"):
        if artifact_file.endswith((".png", ".jpg", ".jpeg", ".svg", ".pdf")):
            data = figure.to_image(format=Path(artifact_file).suffix.lstrip("."))
        else:
            data = figure.to_html(include_plotlyjs="cdn", full_html=True).encode()
    else:
        raise UsageError(
            f"log_figure: cannot store a {type(figure).__name__}",
            hint="pass a matplotlib Figure or a plotly Figure",
        )
    _log_bytes(data, artifact_file)


def flush() -> None:
    """Write buffered records now (MLflow's async logging flush)."""
    api.flush()
