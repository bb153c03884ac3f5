"""Translate a ``dvc.yaml`` into the ``stages:`` (and ``models:``) of an ``mlcd.yaml``.

DVC resolves its templating when it reads the file; mlcd has no templating, so the import
resolves it once, the way DVC does: ``vars`` (inline mappings and params files, with an
optional ``:key,key`` selection) on top of ``params.yaml``, ``${a.b}`` / ``${a[0]}``
interpolation (a whole-string reference keeps the value's type), ``foreach`` over a list or
a mapping (``name@item`` / ``name@key``, ``${item}`` and ``${key}``) and ``matrix``
(``name@v1-v2``, ``${item.axis}``). Keys a stage reads from a params file through ``${...}``
stay ``${key}`` in commands (mlcd fills them in when the stage runs) and become params of
the stage; elsewhere (paths) they are resolved once.

What cannot be translated is refused with the construct and the reason, never guessed:
external (URL) deps, dicts or lists interpolated into the middle of a string, ``dvc.yaml``
files in sub-folders. DVC's top-level ``artifacts:`` (its model registry) become ``models:``
entries; top-level ``metrics:``/``plots:``/``params:``/``datasets:`` are DVC's display
settings and are reported as dropped.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlcd.errors import ConfigError

DVC_FILE = "dvc.yaml"
DEFAULT_PARAMS = "params.yaml"
_REF = re.compile(r"(?<!\\)\$\{\s*([^}]*?)\s*\}")
_PART = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")
_STAGE_KEYS = {
    "cmd",
    "deps",
    "params",
    "outs",
    "metrics",
    "plots",
    "wdir",
    "frozen",
    "always_changed",
    "desc",
    "meta",
    "vars",
}
_OUT_FLAGS = {"cache", "persist", "desc", "remote", "push", "type", "labels", "meta"}
_DISPLAY_SECTIONS = ("metrics", "plots", "params", "datasets")


def _refuse(where: str, problem: str, hint: str) -> ConfigError:
    return ConfigError(f"dvc.yaml: {where}: {problem}; nothing was imported", hint=hint)


@dataclass
class Translation:
    """``mlcd.yaml`` sections translated from ``dvc.yaml``, and what was left behind."""

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)


@dataclass
class _Context:
    """Values ``${...}`` can name; ``sources`` says which params file a top key came from."""

    values: dict[str, Any]
    sources: dict[str, str]

    def with_(self, extra: Mapping[str, Any], source: str | None = None) -> _Context:
        values = {**self.values, **extra}
        sources = dict(self.sources)
        for key in extra:
            if source is None:
                sources.pop(key, None)
            else:
                sources[key] = source
        return _Context(values, sources)


def _load_yaml(path: Path, what: str) -> Any:
    import yaml

    from mlcd.yamlfile import MAX_CONFIG_BYTES, load_limited, read_limited

    text = read_limited(path, MAX_CONFIG_BYTES, str(path))
    try:
        return load_limited(text, str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{what} {path.name} is not valid YAML: {exc}", hint="fix the file, then import again"
        ) from exc


def _vars_file(root: Path, spec: str, where: str) -> tuple[str, dict[str, Any]]:
    name, _, keys = spec.partition(":")
    path = root / name
    if not path.is_file():
        raise _refuse(where, f"vars file '{name}' does not exist", "create it or fix 'vars:'")
    data = _load_yaml(path, "vars file") if path.suffix in (".yaml", ".yml") else None
    if path.suffix == ".json":
        import json

        data = json.loads(path.read_text(encoding="utf-8"))
    if data is None and path.suffix not in (".yaml", ".yml", ".json"):
        raise _refuse(
            where,
            f"vars file '{name}' is not YAML or JSON (DVC's TOML/Python params are not read)",
            "convert it to params YAML",
        )
    data = data or {}
    if keys:
        wanted = [k.strip() for k in keys.split(",") if k.strip()]
        data = {k: data[k] for k in wanted if k in data}
    return name, dict(data)


def _extend(context: _Context, items: Any, root: Path, where: str) -> _Context:
    for item in items or []:
        if isinstance(item, str):
            name, data = _vars_file(root, item, where)
            context = context.with_(data, source=name)
        elif isinstance(item, Mapping):
            context = context.with_(dict(item))
        else:
            raise _refuse(where, f"vars entry {item!r} is neither a file nor a mapping", "fix it")
    return context


def _lookup(context: _Context, expr: str, where: str, used: set[tuple[str, str]]) -> Any:
    parts = [
        m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PART.finditer(expr)
    ]
    if not parts or "".join(str(p) for p in parts).strip() == "":
        raise _refuse(where, f"empty reference '${{{expr}}}'", "name a variable inside ${...}")
    value: Any = context.values
    for index, part in enumerate(parts):
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            known = ", ".join(sorted(map(str, context.values))) or "none"
            raise _refuse(
                where,
                f"'${{{expr}}}' names nothing (at '{part}'; variables: {known})",
                "define it in params.yaml or under vars:",
            ) from None
        if index == 0 and isinstance(part, str) and part in context.sources:
            source = context.sources[part]
            # DVC tracks the param read: the longest dotted key made of names.
            names = [str(p) for p in parts if isinstance(p, str)]
            cut = next((i for i, p in enumerate(parts) if isinstance(p, int)), len(parts))
            used.add((source, ".".join(names[:cut])))
    return value


def _to_str(value: Any, where: str, expr: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        raise _refuse(
            where,
            f"'${{{expr}}}' is a {type(value).__name__} inside a string",
            "interpolate single values inside strings (mlcd has no dict-to-arguments expansion)",
        )
    return str(value)


def _resolve(
    value: Any,
    context: _Context,
    where: str,
    used: set[tuple[str, str]],
    keep_params: bool = False,
) -> Any:
    """``value`` with its ``${...}`` resolved.

    With ``keep_params`` (commands), a reference to a params-file value stays ``${key}``:
    mlcd fills it in when the stage runs, so editing params.yaml re-runs the stage with the
    new value, as DVC does.
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value.strip())
        if whole and not keep_params:
            return _lookup(context, whole.group(1), where, used)

        def sub(match: re.Match[str]) -> str:
            expr = match.group(1)
            found: set[tuple[str, str]] = set()
            resolved = _to_str(_lookup(context, expr, where, found), where, expr)
            used.update(found)
            if keep_params and found and re.fullmatch(r"[A-Za-z_][\w\-]*(\.[\w\-]+)*", expr):
                return "${" + expr + "}"
            return resolved

        text = _REF.sub(sub, value)
        return text if keep_params else text.replace("\\${", "${")
    if isinstance(value, list):
        return [_resolve(v, context, where, used, keep_params) for v in value]
    if isinstance(value, Mapping):
        return {
            _resolve(k, context, where, used): _resolve(v, context, where, used)
            for k, v in value.items()
        }
    return value


def _name_part(value: Any, key: str, index: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return f"{key}{index}"


def _expansions(
    name: str, body: Mapping[str, Any], context: _Context, where: str
) -> list[tuple[str, _Context, Any]]:
    """``(stage name, context, body)`` for each stage ``body`` stands for."""
    used: set[tuple[str, str]] = set()
    if "foreach" in body:
        if "do" not in body:
            raise _refuse(where, "'foreach' without 'do'", "put the stage definition under do:")
        items = _resolve(body["foreach"], context, where, used)
        out = []
        if isinstance(items, Mapping):
            for key, item in items.items():
                local = context.with_({"item": item, "key": key})
                out.append((f"{name}@{key}", local, body["do"]))
        elif isinstance(items, list):
            scalar = all(isinstance(i, str | int | float | bool) for i in items)
            for index, item in enumerate(items):
                suffix = _name_part(item, "", index) if scalar else str(index)
                out.append((f"{name}@{suffix}", context.with_({"item": item}), body["do"]))
        else:
            raise _refuse(where, "foreach needs a list or a mapping", "fix its value")
        return out
    if "matrix" in body:
        matrix = _resolve(body["matrix"], context, where, used)
        if not isinstance(matrix, Mapping) or not all(isinstance(v, list) for v in matrix.values()):
            raise _refuse(where, "matrix needs a mapping of lists", "fix its value")
        axes = list(matrix)
        stage = {k: v for k, v in body.items() if k != "matrix"}
        out = []
        for combo in itertools.product(*(list(enumerate(matrix[a])) for a in axes)):
            item = {axis: value for axis, (_, value) in zip(axes, combo, strict=True)}
            suffix = "-".join(
                _name_part(value, axis, index)
                for axis, (index, value) in zip(axes, combo, strict=True)
            )
            out.append((f"{name}@{suffix}", context.with_({"item": item}), stage))
        return out
    return [(name, context, body)]


def _entries(value: Any, where: str, what: str) -> list[tuple[str, dict[str, Any]]]:
    """A list of ``path`` or ``{path: {flags}}`` as ``(path, flags)``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _refuse(where, f"{what} must be a list", "write one entry per line, '- path'")
    out: list[tuple[str, dict[str, Any]]] = []
    for item in value:
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, Mapping) and len(item) == 1:
            path, flags = next(iter(item.items()))
            out.append((str(path), dict(flags or {})))
        else:
            raise _refuse(where, f"{what} entry {item!r} is not a path", "write '- path'")
    return out


def _translate_stage(
    name: str, body: Any, context: _Context, root: Path, where: str
) -> tuple[dict[str, Any], bool]:
    if not isinstance(body, Mapping):
        raise _refuse(where, "a stage must be a mapping", "give it at least 'cmd:'")
    unknown = sorted(set(body) - _STAGE_KEYS)
    if unknown:
        raise _refuse(
            where,
            f"unknown stage key(s) {', '.join(unknown)}",
            "mlcd translates cmd, deps, params, outs, metrics, plots, wdir, frozen, "
            "always_changed, desc, meta and vars",
        )
    used: set[tuple[str, str]] = set()
    context = _extend(context, body.get("vars"), root, where)
    wdir = str(_resolve(body.get("wdir", "."), context, where, used))
    cmd_used: set[tuple[str, str]] = set()
    cmd = _resolve(body.get("cmd"), context, where, cmd_used, keep_params=True)
    if not cmd:
        raise _refuse(where, "the stage has no cmd", "add 'cmd:'")
    stage: dict[str, Any] = {"cmd": cmd if isinstance(cmd, list) else str(cmd)}
    if wdir not in ("", "."):
        stage["wdir"] = wdir
    deps = []
    for dep in _resolve(body.get("deps") or [], context, where, used):
        dep = str(dep)
        if re.match(r"^[a-z][a-z0-9+.-]*://", dep, re.IGNORECASE):
            raise _refuse(
                where,
                f"dep '{dep}' is a URL (a DVC external dependency)",
                "mlcd's deps are project files: add a stage that downloads it, or track a copy "
                "with 'mlcd data add'",
            )
        deps.append(dep)
    if deps:
        stage["deps"] = deps
    params = _params(_resolve(body.get("params") or [], context, where, used), root, wdir, where)
    outs: list[Any] = []
    for path, flags in _entries(_resolve(body.get("outs"), context, where, used), where, "outs"):
        extra = sorted(set(flags) - _OUT_FLAGS)
        if extra:
            raise _refuse(where, f"out '{path}' has flag(s) {', '.join(extra)}", "remove them")
        cache, persist = bool(flags.get("cache", True)), bool(flags.get("persist", False))
        outs.append(
            path if cache and not persist else {"path": path, "cache": cache, "persist": persist}
        )
    if outs:
        stage["outs"] = outs
    for key in ("metrics", "plots"):
        paths = [p for p, _ in _entries(_resolve(body.get(key), context, where, used), where, key)]
        if paths:
            stage[key] = paths
    for source, key in sorted(cmd_used):
        _add_param(params, _relative_to(source, wdir), key)
    if params:
        stage["params"] = _render_params(params, wdir)
    if body.get("always_changed"):
        stage["always_run"] = True
    if body.get("desc"):
        stage["desc"] = str(_resolve(body["desc"], context, where, used))
    order = ["cmd", "wdir", "deps", "params", "outs", "metrics", "plots", "always_run", "desc"]
    return {k: stage[k] for k in order if k in stage}, bool(body.get("frozen"))


def _relative_to(source: str, wdir: str) -> str:
    """A params file named from the project root, as a path relative to ``wdir``."""
    if wdir in ("", "."):
        return source
    import os

    return PurePosixPath(os.path.relpath(source, wdir)).as_posix()


def _add_param(params: dict[str, list[str]], file: str, key: str) -> None:
    keys = params.setdefault(file, [])
    if key not in keys and not any(key.startswith(k + ".") for k in keys):
        keys.append(key)


def _params(value: Any, root: Path, wdir: str, where: str) -> dict[str, list[str]]:
    """``{params file (relative to wdir): [keys]}``; a file listed without keys: all of them."""
    params: dict[str, list[str]] = {}
    if not isinstance(value, list):
        raise _refuse(where, "params must be a list", "write '- key' or '- file.yaml: [keys]'")
    for item in value:
        if isinstance(item, str):
            _add_param(params, DEFAULT_PARAMS, item)
        elif isinstance(item, Mapping):
            for file, keys in item.items():
                if keys is None or keys == []:
                    data = _load_yaml(root / wdir / str(file), "params file") or {}
                    for key in data:
                        _add_param(params, str(file), str(key))
                else:
                    for key in keys:
                        _add_param(params, str(file), str(key))
        else:
            raise _refuse(where, f"params entry {item!r} is not a key or a file", "fix it")
    return params


def _render_params(params: dict[str, list[str]], wdir: str) -> list[Any]:
    """mlcd's ``params:``: bare keys for the root params.yaml, else ``{file: [keys]}``.

    In mlcd a bare key always names the project's params file; in DVC it names the one in
    the stage's wdir, so a stage with a wdir gets the explicit form.
    """
    out: list[Any] = []
    for file, keys in params.items():
        if file == DEFAULT_PARAMS and wdir in ("", "."):
            out.extend(keys)
        else:
            out.append({file: keys})
    return out


def translate(root: Path) -> Translation:
    """Read ``ROOT/dvc.yaml`` (and its params and vars files) into mlcd's sections.

    Raises:
        ConfigError: a construct that cannot be translated, named with the reason.
    """
    path = root / DVC_FILE
    if not path.is_file():
        raise ConfigError(
            f"no {DVC_FILE} in {root}", hint="run 'mlcd import dvc' in the DVC project's root"
        )
    nested = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob(DVC_FILE)
        if p != path and not ({".dvc", ".git", ".mlcd"} & set(p.relative_to(root).parts))
    )
    if nested:
        raise _refuse(
            ", ".join(nested),
            "a dvc.yaml in a sub-folder (mlcd reads one mlcd.yaml at the project root)",
            "move those stages into the root dvc.yaml with 'wdir:' set, then import again",
        )
    document = _load_yaml(path, "DVC pipeline") or {}
    if not isinstance(document, Mapping):
        raise _refuse("(top level)", "not a mapping", "fix the file")
    base: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if (root / DEFAULT_PARAMS).is_file():
        base = dict(_load_yaml(root / DEFAULT_PARAMS, "params file") or {})
        sources = {key: DEFAULT_PARAMS for key in base}
    context = _extend(_Context(base, sources), document.get("vars"), root, "vars")
    result = Translation()
    for name, body in (document.get("stages") or {}).items():
        where = f"stages.{name}"
        if not isinstance(body, Mapping):
            raise _refuse(where, "a stage must be a mapping", "give it at least 'cmd:'")
        for full, local, stage_body in _expansions(str(name), body, context, where):
            stage, frozen = _translate_stage(full, stage_body, local, root, f"stages.{full}")
            result.stages[full] = stage
            if frozen:
                result.frozen.append(full)
    result.models = _models(document.get("artifacts") or {}, result.stages, result.notes)
    _top_level_reports(document, result)
    for section in _DISPLAY_SECTIONS:
        if document.get(section) and section not in ("metrics", "plots"):
            result.notes.append(
                f"top-level '{section}:' of dvc.yaml (DVC's display settings) was not "
                "translated: mlcd shows every stage's metrics and plots files"
            )
    if result.frozen:
        result.notes.append(
            f"frozen stage(s) {', '.join(result.frozen)}: mlcd has no frozen stages; their "
            "recorded results are imported, but they re-run when their inputs change"
        )
    return result


def _models(
    artifacts: Mapping[str, Any], stages: Mapping[str, Mapping[str, Any]], notes: list[str]
) -> dict[str, dict[str, Any]]:
    """DVC's ``artifacts:`` of type ``model`` as mlcd ``models:`` (the producing stage named)."""
    models: dict[str, dict[str, Any]] = {}
    for name, spec in artifacts.items():
        if not isinstance(spec, Mapping) or "path" not in spec:
            notes.append(f"artifact '{name}' has no path: not translated")
            continue
        if spec.get("type", "model") != "model":
            notes.append(f"artifact '{name}' is of type {spec.get('type')!r}: not a model, skipped")
            continue
        path = PurePosixPath(str(spec["path"])).as_posix()
        model: dict[str, Any] = {"path": path}
        for stage_name, stage in stages.items():
            wdir = stage.get("wdir", ".")
            for out in stage.get("outs", []):
                out_path = out if isinstance(out, str) else out["path"]
                full = PurePosixPath(wdir, out_path).as_posix().removeprefix("./")
                if path == full or path.startswith(full + "/"):
                    model["stage"] = stage_name
        if spec.get("desc"):
            model["description"] = str(spec["desc"])
        models[str(name)] = model
    return models


def _top_files(section: Any) -> list[str]:
    """The files a top-level ``metrics:`` or ``plots:`` names (plot ``y:`` mappings included)."""
    files: list[str] = []
    for item in section or []:
        if isinstance(item, str):
            files.append(item)
        elif isinstance(item, Mapping):
            for key, spec in item.items():
                y = spec.get("y") if isinstance(spec, Mapping) else None
                if isinstance(y, Mapping):
                    files.extend(str(f) for f in y)
                elif "/" in str(key) or "." in str(key):
                    files.append(str(key))
    return list(dict.fromkeys(PurePosixPath(f).as_posix() for f in files))


def _top_level_reports(document: Mapping[str, Any], result: Translation) -> None:
    """Top-level metrics and plots files that sit inside a stage's out folder become that
    stage's ``metrics:`` / ``plots:`` (mlcd records metrics from stage metrics files)."""
    for section in ("metrics", "plots"):
        files = _top_files(document.get(section))
        if not files:
            continue
        left = []
        for file in files:
            owner = _owner(file, result.stages)
            if owner is None:
                left.append(file)
                continue
            stage = result.stages[owner]
            wdir = stage.get("wdir", ".")
            local = PurePosixPath(file).relative_to(wdir).as_posix() if wdir != "." else file
            if local not in stage.get(section, []):
                stage.setdefault(section, []).append(local)
        if left:
            result.notes.append(
                f"top-level '{section}:' file(s) {', '.join(left)} are not inside a stage's "
                f"out folder: not translated (declare them under a stage's {section}:)"
            )


def _owner(file: str, stages: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The stage whose out folder holds ``file`` (not equal to an out: that would be twice)."""
    for name, stage in stages.items():
        wdir = stage.get("wdir", ".")
        for out in stage.get("outs", []):
            out_path = out if isinstance(out, str) else out["path"]
            full = PurePosixPath(wdir, out_path).as_posix().removeprefix("./")
            if file.startswith(full.rstrip("/") + "/"):
                return name
    return None
