"""Stage: one step of a pipeline, with every path resolved against the project root.

``StageSpec`` is a plain frozen value built from ``config.Stage`` once (on the slow path,
when ``mlcd.yaml`` changed) and cached as JSON in ``.mlcd/`` so that ``mlcd status`` never
needs pydantic. Paths are project-relative POSIX strings; a dep outside the project stays
absolute, an out outside the project is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import ConfigError
from mlcd.layout import project_path

if TYPE_CHECKING:
    from mlcd.config import Config
    from mlcd.config import Stage as StageConfig


#: ``${key}`` in a command: the value of a param, filled in when the stage runs (as in DVC).
#: ``\\${...}`` is a literal ``${...}``; a shell variable is written ``$NAME``.
PARAM_REF = re.compile(r"(?<!\\)\$\{\s*([^}]*?)\s*\}")


def cmd_param_keys(cmd: str) -> list[str]:
    """The param keys a command names with ``${key}``, in order."""
    return list(dict.fromkeys(m.group(1) for m in PARAM_REF.finditer(cmd)))


def render_cmd(cmd: str, params: Mapping[str, Mapping[str, Any]]) -> str:
    """The command with each ``${key}`` replaced by the param's value.

    Args:
        cmd: the command as declared.
        params: the stage's param values, ``{file: {dotted key: value}}`` (sections flattened).

    Raises:
        ConfigError: a key names no declared param, or a whole section.
    """
    if "${" not in cmd:
        return cmd

    def value_of(match: re.Match[str]) -> str:
        key = match.group(1)
        for values in params.values():
            if key in values:
                value = values[key]
                if isinstance(value, bool):
                    return "true" if value else "false"
                return str(value)
        if any(k.startswith(key + ".") for values in params.values() for k in values):
            raise ConfigError(
                f"the command '{cmd}' names the section '${{{key}}}', not a single value",
                hint="name one value, like ${" + key + ".lr}",
            )
        raise ConfigError(
            f"the command '{cmd}' names '${{{key}}}', which is not a param of the stage",
            hint="add the key to params.yaml; for a shell variable write $NAME (or \\${NAME})",
        )

    return PARAM_REF.sub(value_of, cmd).replace("\\${", "${")


@dataclass(frozen=True)
class OutDecl:
    """A declared output: a file or folder the stage writes."""

    path: str
    cache: bool = True
    persist: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "cache": self.cache, "persist": self.persist}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutDecl:
        return cls(str(data["path"]), bool(data["cache"]), bool(data["persist"]))


@dataclass(frozen=True)
class ParamRef:
    """A key (dotted path) of a params file the stage reads."""

    file: str
    key: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "key": self.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamRef:
        return cls(str(data["file"]), str(data["key"]))


@dataclass(frozen=True)
class StageSpec:
    """A stage with its command and resolved paths; the unit the DAG and runner work on."""

    name: str
    cmd: str
    wdir: str = "."
    deps: tuple[str, ...] = ()
    params: tuple[ParamRef, ...] = ()
    outs: tuple[OutDecl, ...] = ()
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    always_run: bool = False
    desc: str | None = None
    #: inputs mlcd writes before the stage is judged (``from_log:``, ``warm_start:``); their
    #: files are among ``deps``, so they are fingerprinted like any other dep
    inputs: tuple[Mapping[str, Any], ...] = ()
    #: data contracts (``data:``) on what the stage writes (``role: out``) or reads (``dep``)
    contracts: tuple[Mapping[str, Any], ...] = ()
    #: what one run of the command reserves on a Ray cluster (``num_cpus``, ``num_gpus``)
    resources: Mapping[str, float] = field(default_factory=dict)

    @property
    def input_paths(self) -> tuple[str, ...]:
        """The deps mlcd itself writes before the stage is judged (see ``inputs``)."""
        return written_paths(self.inputs)

    @property
    def produced(self) -> tuple[str, ...]:
        """Every path the stage writes: outs, then metrics and plots files."""
        return (*(o.path for o in self.outs), *self.metrics, *self.plots)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cmd": self.cmd,
            "wdir": self.wdir,
            "deps": list(self.deps),
            "params": [p.to_dict() for p in self.params],
            "outs": [o.to_dict() for o in self.outs],
            "metrics": list(self.metrics),
            "plots": list(self.plots),
            "env": dict(self.env),
            "always_run": self.always_run,
            "desc": self.desc,
            "inputs": [dict(i) for i in self.inputs],
            "contracts": [dict(c) for c in self.contracts],
            "resources": dict(self.resources),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageSpec:
        return cls(
            name=str(data["name"]),
            cmd=str(data["cmd"]),
            wdir=str(data.get("wdir", ".")),
            deps=tuple(data.get("deps", ())),
            params=tuple(ParamRef.from_dict(p) for p in data.get("params", ())),
            outs=tuple(OutDecl.from_dict(o) for o in data.get("outs", ())),
            metrics=tuple(data.get("metrics", ())),
            plots=tuple(data.get("plots", ())),
            env=dict(data.get("env", {})),
            always_run=bool(data.get("always_run", False)),
            desc=data.get("desc"),
            inputs=tuple(dict(i) for i in data.get("inputs", ())),
            contracts=tuple(dict(c) for c in data.get("contracts", ())),
            resources=dict(data.get("resources", {})),
        )


def resolve_path(root: Path, wdir: str, path: str) -> tuple[str, bool]:
    """A stage path as a project-relative POSIX path; ``(path, inside_project)``.

    Paths outside the project come back absolute with ``inside_project`` False.
    """
    base = root if wdir in ("", ".") else root / wdir
    full = Path(os.path.normpath(base / os.path.expanduser(path)))
    try:
        relative = full.relative_to(root)
    except ValueError:
        return full.as_posix(), False
    text = relative.as_posix()
    return (text if text else "."), True


def _project_path(root: Path, stage: str, wdir: str, path: str, what: str) -> str:
    resolved, inside = resolve_path(root, wdir, path)
    if not inside or resolved == ".":
        raise ConfigError(
            f"stage '{stage}': {what} '{path}' is outside the project ({root})",
            hint=f"a stage may only write inside the project: move the {what} below {root}",
        )
    # The rule mlcd.lock is held to, so a run never records a lock that is then refused.
    project_path(
        root,
        resolved,
        f"mlcd.yaml: stage '{stage}': {what}",
        hint=f"a stage writes only inside the project, in real folders (not through a symlink "
        f"leading outside) and never into .git/ or .mlcd/: move the {what}",
    )
    return resolved


def spec_from_config(
    name: str,
    stage: StageConfig,
    root: Path,
    params_file: str = "params.yaml",
    targets: Mapping[str, str | None] | None = None,
) -> StageSpec:
    """Build a ``StageSpec`` from the validated ``mlcd.yaml`` section of one stage.

    Raises:
        ConfigError: an out, metrics or plots file outside the project.
    """
    wdir, inside = resolve_path(root, ".", stage.wdir)
    if not inside:
        raise ConfigError(
            f"stage '{name}': wdir '{stage.wdir}' is outside the project ({root})",
            hint="use a folder inside the project as wdir",
        )
    cmd = stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)
    inputs = _inputs(name, stage, root, wdir, targets or {})
    written = written_paths(inputs)
    deps = tuple(
        dict.fromkeys([*(resolve_path(root, wdir, dep)[0] for dep in stage.deps), *written])
    )
    params: list[ParamRef] = []
    for item in stage.params:
        if isinstance(item, str):
            params.append(ParamRef(params_file, item))
        else:
            for file, keys in item.items():
                resolved = resolve_path(root, wdir, file)[0]
                params.extend(ParamRef(resolved, key) for key in keys)
    for key in cmd_param_keys(cmd):
        covered = any(p.key == key or key.startswith(p.key + ".") for p in params)
        if not covered:
            params.append(ParamRef(params_file, key))
    outs = []
    for out in stage.outs:
        if isinstance(out, str):
            outs.append(OutDecl(_project_path(root, name, wdir, out, "out")))
        else:
            path = _project_path(root, name, wdir, out.path, "out")
            outs.append(OutDecl(path, cache=out.cache, persist=out.persist))
    metrics = tuple(_project_path(root, name, wdir, m, "metrics file") for m in stage.metrics)
    plots = tuple(_project_path(root, name, wdir, p, "plots file") for p in stage.plots)
    return StageSpec(
        name=name,
        cmd=cmd,
        wdir=wdir,
        deps=deps,
        params=tuple(dict.fromkeys(params)),
        outs=tuple(outs),
        metrics=metrics,
        plots=plots,
        env={**stage.env, **({"MLCD_AUTOLOG": "1"} if stage.autolog else {})},
        always_run=stage.always_run,
        desc=stage.desc,
        inputs=tuple(inputs),
        resources={} if stage.resources is None else stage.resources.model_dump(),
    )


def written_paths(inputs: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The project paths mlcd writes for a stage's inputs (from_log, replay, sources,
    warm_start pointers): deps of the stage that no stage produces."""
    return tuple(str(i[k]) for i in inputs for k in ("path", "replay_path", "pointer") if i.get(k))


#: where ``warm_start:`` writes the version it resolved (a dep: a new champion re-runs the stage)
WARM_START_DIR = ".mlcd/warm_start"


def _inputs(
    name: str, stage: StageConfig, root: Path, wdir: str, targets: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """The ``from_log`` and ``warm_start`` declarations with their project paths resolved."""
    out: list[dict[str, Any]] = []
    for item in stage.from_log:
        replay = item.replay
        out.append(
            {
                "kind": "from_log",
                "spec": item.model_dump(),
                "label": item.label or targets.get(item.model) or "label",
                "path": _project_path(root, name, wdir, item.path, "from_log path"),
                "replay_path": None
                if replay is None
                else _project_path(root, name, wdir, replay.path, "replay path"),
            }
        )
    for source in stage.sources:
        out.append(
            {
                "kind": "sql" if source.sql is not None else "url",
                "path": _project_path(root, name, wdir, source.path, "source path"),
                "url": source.sql.url if source.sql is not None else source.url,
                "query": None if source.sql is None else source.sql.query,
                "freshness": None if source.sql is None else source.sql.freshness,
                "options": dict(source.options),
            }
        )
    if stage.warm_start is not None:
        ref = f"{stage.warm_start.model}@{stage.warm_start.alias}"
        out.append(
            {
                "kind": "warm_start",
                "model": stage.warm_start.model,
                "alias": stage.warm_start.alias,
                "pointer": f"{WARM_START_DIR}/{ref}.json",
            }
        )
    return out


def specs_from_config(config: Config, root: Path) -> dict[str, StageSpec]:
    """Every stage of ``mlcd.yaml`` as a ``StageSpec``, in declaration order."""
    targets = {name: model.target for name, model in config.models.items()}
    specs = {
        name: spec_from_config(name, stage, root, config.params_file, targets)
        for name, stage in config.stages.items()
    }
    if not config.data:
        return specs
    from dataclasses import replace

    declared = {
        name: (resolve_path(root, ".", contract.path)[0], contract)
        for name, contract in config.data.items()
    }
    for name, spec in specs.items():
        found = []
        for data_name, (path, contract) in declared.items():
            writes = any(path == p or path.startswith(p + "/") for p in spec.produced)
            reads = any(path == d or path.startswith(d + "/") for d in spec.deps)
            if writes or reads:
                found.append(
                    {
                        "name": data_name,
                        "path": path,
                        "role": "out" if writes else "dep",
                        "contract": contract.model_dump(),
                    }
                )
        if found:
            specs[name] = replace(spec, contracts=tuple(found))
    return specs
