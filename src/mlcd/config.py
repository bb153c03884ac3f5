"""The ``mlcd.yaml`` schema and its loader.

Precedence: defaults < ``mlcd.yaml`` < ``MLCD_*`` environment < flags. Every error names the
file, the line and the key (``mlcd.yaml:12: stages.train.deps[0]: ...``) and says how to fix
it; unknown keys get a "did you mean" suggestion. Sections that later steps implement are
validated here already, so a typo never waits until the day the section is used.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlcd.contracts.spec import Contract
from mlcd.errors import ConfigError
from mlcd.layout import CONFIG_FILE, remember_validated
from mlcd.layout import DEFAULT_ARTIFACTS as DEFAULT_ARTIFACTS
from mlcd.layout import DEFAULT_STORE as DEFAULT_STORE
from mlcd.layout import STATE_DIR as STATE_DIR
from mlcd.yamlfile import MAX_CONFIG_BYTES, compose_limited, read_limited


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- step 1-2: stages
class OutSpec(_Section):
    """A stage output with options (a plain string means ``cache: true``)."""

    path: str
    cache: bool = True
    persist: bool = False


class Replay(_Section):
    """A bounded memory of past training windows, written beside the newest window's rows.

    ``mix: uniform`` keeps a uniform sample of every past row (a reservoir); ``per_window``
    gives each past window an equal share, so an old regime keeps its weight as windows pile up.
    """

    path: str
    size: int = Field(default=5000, gt=0)
    mix: Literal["uniform", "per_window"] = "uniform"
    seed: int = 0


class FromLog(_Section):
    """Production traffic as a stage input: the prediction log joined with its labels.

    Before the stage runs mlcd writes the dataset to ``path`` (a dep of the stage like any
    other: no new rows or labels, same bytes, the stage restores from cache). With
    ``replay``, ``path`` holds only the rows no earlier training window had (the newest
    window, recorded in the store) and ``replay.path`` a bounded sample of the older ones.
    """

    model: str
    path: str
    since: str | None = None
    labelled_only: bool = True
    sample: int | None = Field(default=None, gt=0)
    stratify: str | None = None
    seed: int = 0
    label: str | None = None
    replay: Replay | None = None


class SqlQuery(_Section):
    """A query on a database SQLAlchemy reaches; ``${NAME}`` in the URL comes from the
    environment when it runs (credentials never in mlcd.yaml, never recorded)."""

    url: str
    query: str
    freshness: str | None = None


class Source(_Section):
    """Data outside the project as a stage input, written to ``path`` before the stage is
    judged: a SQL query's result as Parquet, or a file or prefix behind an fsspec URL."""

    path: str
    sql: SqlQuery | None = None
    url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(f"url {value!r} needs a scheme, like s3://bucket/prefix/ or https://")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if (self.sql is None) == (self.url is None):
            raise ValueError("a source is either sql: {url, query} or url: URL (exactly one)")
        return self


class WarmStart(_Section):
    """Continue training from a registered version: its package is fetched for the stage."""

    model: str
    alias: str = "champion"


class Resources(_Section):
    """What one run of a stage's command reserves on a Ray cluster (``--executor ray``);
    the local executor ignores it."""

    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)


class Stage(_Section):
    """One pipeline stage, in the spirit of a ``dvc.yaml`` stage."""

    cmd: str | list[str]
    deps: list[str] = Field(default_factory=list)
    params: list[str | dict[str, list[str]]] = Field(default_factory=list)
    outs: list[str | OutSpec] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    plots: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    always_run: bool = False
    #: record scikit-learn, XGBoost and LightGBM training without code changes (docs/tracking.md)
    autolog: bool = False
    wdir: str = "."
    desc: str | None = None
    from_log: list[FromLog] = Field(default_factory=list)
    warm_start: WarmStart | None = None
    sources: list[Source] = Field(default_factory=list)
    resources: Resources | None = None

    @field_validator("cmd")
    @classmethod
    def _cmd_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if not value or (isinstance(value, list) and not all(v.strip() for v in value)):
            raise ValueError("a stage needs a non-empty command")
        return value


class Remote(_Section):
    """A place to push and pull objects and run-cache entries (a folder or fsspec URL)."""

    url: str
    options: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- step 3-4: models, gates
class Slice(_Section):
    """A slice of the evaluation data: a column value, or a range ``[min, max)``."""

    column: str
    value: str | int | float | bool | None = None
    min: float | None = None
    max: float | None = None


class Model(_Section):
    """Which stage out is which model, and how it is evaluated."""

    path: str
    stage: str | None = None
    flavor: str | None = None
    task: Literal["classification", "regression"] | None = None
    target: str | None = None
    eval_data: str | None = None
    #: training (or validation) data profiled at registration: the monitoring reference
    reference_data: str | None = None
    slices: dict[str, Slice] = Field(default_factory=dict)
    description: str | None = None


# The gate grammar lives here so that mlcd.yaml is checked when it is loaded;
# mlcd.evaluate.gate builds gates from the same patterns (and checks metric names).
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
GATE_PATTERNS: dict[str, str] = {
    "run": rf"run\.metrics\.(?P<metric>[\w.\-/]+?)\s*(?P<op>>=|<=|>|<)\s*(?P<value>{_NUM})",
    "absolute": rf"(?P<metric>\w+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>{_NUM})",
    "relative": rf"(?P<metric>\w+)\s*(?P<op>>=|<=|>|<)\s*champion\.(?P<ref>\w+)"
    rf"(?:\s*(?P<sign>[-+])\s*(?P<margin>{_NUM}))?",
    "significance": rf"(?P<metric>\w+)\s+better\s+than\s+champion\s+at\s+(?P<level>{_NUM})\s*%",
    "slice": rf"no\s+slice\s+loses\s+more\s+than\s+(?P<margin>{_NUM})\s+(?P<metric>\w+)",
    "windows": rf"no\s+past\s+window\s+loses\s+more\s+than\s+(?P<margin>{_NUM})\s+"
    rf"(?P<metric>\w+)",
}


def _check_gate(text: str) -> str:
    import re

    if not any(re.fullmatch(p, text.strip(), re.IGNORECASE) for p in GATE_PATTERNS.values()):
        raise ValueError(
            f"not a gate expression: {text!r}; write 'roc_auc >= 0.85', "
            "'f1 >= champion.f1 - 0.005', 'roc_auc better than champion at 95%' or "
            "'no slice loses more than 0.02 accuracy' or 'no past window loses more than 0.02 "
            "accuracy' (see docs/gates.md)"
        )
    return text.strip()


GateExpression = Annotated[str, AfterValidator(_check_gate)]


# ---------------------------------------------------------------- step 4-5: serving
class PredictionLog(_Section):
    enabled: bool = True
    batch_rows: int = Field(default=5000, gt=0)
    flush_interval_s: float = Field(default=2.0, gt=0)
    queue_size: int = Field(default=100_000, gt=0)


class Serve(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_rows: int = Field(default=10_000, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)
    max_concurrency: int = Field(default=64, gt=0)
    #: rows being parsed or scored at once; past it a request gets a fast 503
    max_rows_in_flight: int = Field(default=100_000, gt=0)
    #: a connection whose request headers are not complete this long after they start is closed
    header_timeout_s: float = Field(default=10.0, gt=0)
    poll_interval_s: float = Field(default=5.0, gt=0)
    #: how often each serving process exchanges state with the fleet (heartbeat, canary verdict)
    fleet_interval_s: float = Field(default=2.0, gt=0)
    prediction_log: PredictionLog = PredictionLog()
    #: predict without a token even when bound beyond loopback (feedback always needs one)
    public_predict: bool = False
    #: Host headers accepted besides localhost, 127.0.0.1, [::1] and the bound address
    allowed_hosts: list[str] = Field(default_factory=list)
    #: feedback requests per second per token (bursts of twice that); 0 turns the limit off
    feedback_rate_per_s: float = Field(default=50.0, ge=0)


# ---------------------------------------------------------------- step 5: monitoring
DriftMethod = Literal["ks", "wasserstein", "psi", "jensenshannon", "chisquare"]


class FeatureDrift(_Section):
    method: DriftMethod | None = None
    threshold: float | None = None


class Drift(_Section):
    numeric_method: DriftMethod | None = None
    categorical_method: DriftMethod | None = None
    threshold: float | None = None
    share_threshold: float = Field(default=0.5, gt=0, le=1)
    features: dict[str, FeatureDrift] = Field(default_factory=dict)
    thresholds: dict[DriftMethod, float] = Field(default_factory=dict)
    bins: int = Field(default=10, ge=2, le=1000)
    sample_size: int | None = Field(default=100_000, gt=0)
    max_values: int | None = Field(default=1_000_000, gt=0)
    #: multiple-testing correction of the p-value tests across columns: none | bh
    correction: Literal["none", "bh"] = "none"


class Webhook(_Section):
    url: str
    allow_private: bool = False


class Alerts(_Section):
    webhooks: list[Webhook] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)


class Monitor(_Section):
    reference: str | None = None
    window: str = "7d"
    drift: Drift = Drift()
    performance_metric: str | None = None
    performance_threshold: float | None = None
    max_missing_share: float = Field(default=0.1, ge=0, le=1)
    max_out_of_range_share: float = Field(default=0.1, ge=0, le=1)
    performance_min_labels: int = Field(default=30, gt=0)
    #: a window with fewer values per column is "not enough data", never drift (None: by method)
    min_rows: int | None = Field(default=None, gt=0)
    label_horizon: str = "30d"
    #: prediction-log segments older than this are dropped by ``mlcd gc`` (None: kept forever)
    log_retention: str | None = None
    #: where the server writes prediction-log segments: a folder (relative to the project)
    #: or an fsspec URL (s3://bucket/prefix) shared by every replica; None: <state>/predictions
    log_location: str | None = None
    alerts: Alerts = Alerts()
    #: the server's live gauges: rows per version's rolling window (0 turns them off)
    live_window_rows: int = Field(default=10_000, ge=0, le=10_000_000)
    live_refresh_s: float = Field(default=5.0, gt=0)


# ---------------------------------------------------------------- step 6: retraining
class DriftTrigger(_Section):
    share: float | None = Field(default=None, gt=0, le=1)
    features: list[str] = Field(default_factory=list)
    #: fewer accepted rows than this in the window: too little evidence, the trigger waits
    min_rows: int = Field(default=200, ge=1)


class DecayTrigger(_Section):
    metric: str
    below: float
    window: str = "1d"
    min_labels: int = Field(default=50, gt=0)


class LabelsTrigger(_Section):
    #: labelled predictions (feedback) received since the last retrain this trigger started
    count: int = Field(gt=0)


class Triggers(_Section):
    drift: DriftTrigger | None = None
    decay: DecayTrigger | None = None
    new_data: list[str] = Field(default_factory=list)
    schedule: str | None = None
    labels: LabelsTrigger | None = None


class Policy(_Section):
    triggers: Triggers = Triggers()
    refresh_stage: str | None = None
    stages: list[str] = Field(default_factory=list)
    promote_to: Literal["challenger", "champion"] = "challenger"
    canary_percent: float = Field(default=10.0, gt=0, le=100)
    canary_window: str = "10m"
    cooldown: str = "1h"
    max_per_day: int = Field(default=4, gt=0)


class Cache(_Section):
    """How files enter and leave the local object store."""

    #: copy (default: safe, costs a full copy), reflink (copy-on-write clone where the
    #: filesystem offers it, else a copy), hardlink (no copy: the workspace file and the
    #: stored object become one read-only file; for inputs that are never edited in place).
    link: Literal["copy", "reflink", "hardlink"] = "copy"


class Config(_Section):
    """The whole ``mlcd.yaml``."""

    version: int = 1
    store: str = DEFAULT_STORE
    artifacts: str = DEFAULT_ARTIFACTS
    cache: Cache = Cache()
    remotes: dict[str, Remote] = Field(default_factory=dict)
    default_remote: str | None = None
    params_file: str = "params.yaml"
    stages: dict[str, Stage] = Field(default_factory=dict)
    models: dict[str, Model] = Field(default_factory=dict)
    gates: dict[str, list[GateExpression]] = Field(default_factory=dict)
    serve: Serve = Serve()
    monitor: Monitor = Monitor()
    retrain: dict[str, Policy] = Field(default_factory=dict)
    data: dict[str, Contract] = Field(default_factory=dict)


# ---------------------------------------------------------------- loading
def _line_map(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """Map each key path of a composed YAML document to its 1-based line."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                walk(value_node, (*path, key_node.value))
                lines[(*path, key_node.value)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


def _nearest_line(lines: Mapping[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at ``loc`` (for did-you-mean)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            # a free-form key of a dict[str, Section]: stay on the value type
            continue
        model = _section_type(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _section_type(annotation: Any) -> Any:
    import typing

    origin = typing.get_origin(annotation)
    if origin is None:
        return annotation
    for arg in reversed(typing.get_args(annotation)):
        found = _section_type(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return None


def _explain(error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
    kind = error["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        owner = _model_at(loc[:-1])
        choices = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(key), choices, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(choices)}"
        return f"unknown key '{key}': {hint}"
    if kind == "missing":
        return "required key is missing: add it"
    return f"{error['msg']} (got {error.get('input')!r})"


_UNION_TAGS = {
    "str",
    "list[str]",
    "OutSpec",
    "dict[str,list[str]]",
    "function-after[_cmd_not_empty(), union[str,list[str]]]",
}


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        p
        for p in loc
        if not (isinstance(p, str) and (p in _UNION_TAGS or p.startswith(("function-", "union["))))
    )


def parse_config(text: str, source: str = CONFIG_FILE) -> Config:
    """Parse and validate the text of an ``mlcd.yaml``.

    Raises:
        ConfigError: with ``file:line: key: problem`` for every problem found.
    """
    return _parse(text, source)[0]


def _parse(text: str, source: str) -> tuple[Config, dict[tuple[Any, ...], int]]:
    """The config and its line map, within the size and alias limits of ``mlcd.yamlfile``."""
    try:
        data, root = compose_limited(text, source, limit=MAX_CONFIG_BYTES)
        lines = _line_map(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{where}: invalid YAML: {problem}",
            hint="fix the syntax at that line (indentation, a missing ':' or an unclosed quote)",
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:1: the file must be a mapping of sections, not {type(data).__name__}"
        )
    try:
        return Config.model_validate(data), lines
    except ValidationError as exc:
        messages = []
        seen: set[str] = set()
        for error in exc.errors():
            loc = _clean_loc(tuple(error["loc"]))
            line = _nearest_line(lines, loc)
            text_loc = f"{source}:{line}" if line else source
            message = f"{text_loc}: {_format_loc(loc)}: {_explain({**error, 'loc': loc})}"
            if message not in seen:
                seen.add(message)
                messages.append(message)
        raise ConfigError(
            "\n".join(messages), hint="see docs/config.md for every key and its type"
        ) from exc


def _apply_env(config: Config, environ: Mapping[str, str]) -> Config:
    """Apply ``MLCD_STORE`` / ``MLCD_ARTIFACTS`` / ``MLCD_REMOTE`` overrides."""
    updates: dict[str, Any] = {}
    if environ.get("MLCD_STORE"):
        updates["store"] = environ["MLCD_STORE"]
    if environ.get("MLCD_ARTIFACTS"):
        updates["artifacts"] = environ["MLCD_ARTIFACTS"]
    if environ.get("MLCD_REMOTE"):
        updates["default_remote"] = environ["MLCD_REMOTE"]
    return config.model_copy(update=updates) if updates else config


def load_config(root: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Load ``ROOT/mlcd.yaml`` (defaults if absent is not allowed: it must exist).

    Raises:
        ConfigError: the file is missing or invalid.
    """
    path = Path(root) / CONFIG_FILE
    source = str(path.name if Path(root) == Path(".") else path)
    try:
        text = read_limited(path, MAX_CONFIG_BYTES, source)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no {CONFIG_FILE} in {Path(root).resolve()}",
            hint="run 'mlcd init' to create one, or run mlcd from your project's root",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {source}: {exc}",
            hint="check that it is a readable UTF-8 text file",
        ) from exc
    environ = os.environ if environ is None else environ
    config, lines = _parse(text, source)
    in_file = config
    config = _apply_env(config, environ)
    check_references(config, source=CONFIG_FILE, lines=lines)
    _remember_secrets(config)
    if not environ.get("MLCD_REMOTE"):  # then the checks above judged the file alone
        _remember_validated(Path(root), text, in_file)
    return config


def _remember_validated(root: Path, text: str, config: Config) -> None:
    """Let ``mlcd.layout.validated_settings`` answer for this (valid) text next time (without
    ``MLCD_REMOTE``: the only override a check depends on), when nothing in it is a secret (the record would be a second copy of it, and the fast path would not
    remember it for masking)."""
    from mlcd.secrets import secrets_in

    if secrets_in(_secret_document(config)):
        return
    remember_validated(
        root,
        text,
        {"store": config.store, "artifacts": config.artifacts, "cache_link": config.cache.link},
    )


def _secret_document(config: Config) -> dict[str, Any]:
    return {
        "store": config.store,
        "artifacts": config.artifacts,
        "remotes": [{"url": r.url, "options": r.options} for r in config.remotes.values()],
        "webhooks": [w.url for w in config.monitor.alerts.webhooks],
    }


def _remember_secrets(config: Config) -> None:
    """Let ``mlcd.secrets`` hide this configuration's passwords, keys and webhook paths in
    every output of this process (even where a driver quotes them without their URL)."""
    from mlcd.secrets import remember_config

    remember_config(_secret_document(config))


def check_references(
    config: Config, source: str = CONFIG_FILE, lines: Mapping[tuple[Any, ...], int] | None = None
) -> None:
    """Cross-section checks: names that must refer to something declared."""
    lines = lines or {}
    problems = []

    def at(loc: tuple[Any, ...]) -> str:
        line = _nearest_line(lines, loc)
        return f"{source}:{line}" if line else source

    if config.default_remote and config.default_remote not in config.remotes:
        problems.append(
            f"{at(('default_remote',))}: default_remote: '{config.default_remote}' is not declared "
            f"under remotes (declared: {', '.join(config.remotes) or 'none'})"
        )
    for name, model in config.models.items():
        if model.stage and model.stage not in config.stages:
            problems.append(
                f"{at(('models', name, 'stage'))}: models.{name}.stage: no stage named "
                f"'{model.stage}' (stages: {', '.join(config.stages) or 'none'})"
            )
    for name, policy in config.retrain.items():
        if name not in config.models:
            problems.append(
                f"{at(('retrain', name))}: retrain.{name}: no model named '{name}' under models"
            )
        for stage in [*policy.stages, *([policy.refresh_stage] if policy.refresh_stage else [])]:
            if stage not in config.stages:
                problems.append(
                    f"{at(('retrain', name))}: retrain.{name}: no stage named '{stage}'"
                )
    if problems:
        raise ConfigError("\n".join(problems), hint="declare the missing name or fix the reference")
