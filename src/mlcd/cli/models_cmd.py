"""Registry and evaluation commands: ``mlcd models ...`` and ``mlcd evaluate``.

Exit codes: 0 ok; 1 a gate failed (the alias did not move); 2 usage or configuration error
(``--force`` without ``--reason``, evaluation on training data, bad references); 3 runtime,
or a latency gate too noisy to judge (inconclusive: the alias did not move either).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlcd.cli.output import emit, note, table
from mlcd.cli.step_progress import step_progress

if TYPE_CHECKING:
    from mlcd.project import Project

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TrustOpt = Annotated[
    bool, typer.Option("--trust", help="Allow pickle-based packages (they can run code).")
]
models_app = typer.Typer(
    help="The model registry: versions, aliases, promotion.", no_args_is_help=True
)


def _when(at: float | None) -> str:
    if not at:
        return ""
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _version_number(project: Project, name: str, version: str) -> int:
    from mlcd.errors import UsageError
    from mlcd.registry import resolve

    if version.isdigit() and int(version) < 2**63:  # SQLite's INTEGER is 64-bit
        return int(version)
    if version == "latest" or version.startswith("@"):
        return resolve(project.store, f"{name}@{version.lstrip('@')}").version
    raise UsageError(
        f"invalid version {version!r}",
        hint="give a number, 'latest' or '@ALIAS'",
    )


def _model_spec(project: Project, name: str) -> Any:
    return project.config.models.get(name)


def _data_path(project: Project, name: str, data: Path | None) -> str | None:
    if data is not None:
        return str(data)
    spec = _model_spec(project, name)
    if spec is not None and spec.eval_data:
        return str(project.root / spec.eval_data)
    return None


def _report_dir(project: Project, name: str, version: int, report_dir: Path | None) -> Path:
    if report_dir is not None:
        return report_dir
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S")
    return project.state_dir / "reports" / name / f"v{version}-{stamp}"


# ---------------------------------------------------------------- read
@models_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """List models with their latest version and aliases."""
    from mlcd.project import Project
    from mlcd.registry import list_models as query

    with Project.open() as project:
        rows = query(project.store)

    def render(out: Any) -> None:
        if not rows:
            out.print("no models yet: register one with 'mlcd models register NAME PATH'")
            return
        out.print(
            table(
                None,
                ["model", "versions", "latest", "aliases", "description"],
                [
                    [
                        r["name"],
                        r["versions"],
                        r["latest"],
                        ", ".join(f"{a}→{v}" for a, v in r["aliases"].items()),
                        r["description"],
                    ]
                    for r in rows
                ],
            )
        )

    emit(rows, as_json, render)


@models_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="NAME, NAME/VERSION or NAME@ALIAS.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a model's versions and aliases, or one version's package details."""
    from mlcd.project import Project
    from mlcd.registry import describe, fetch, resolve
    from mlcd.registry.package import ModelPackage

    with Project.open() as project:
        if "@" in name or "/" in name:
            version = resolve(project.store, name)
            folder = fetch(project.objects, version, project.state_dir / "cache" / "models")
            package = ModelPackage.read(folder, verify=False)
            data: dict[str, Any] = {**version.to_dict(), "package": package.to_dict()}
        else:
            data = describe(project.store, name)

    def render(out: Any) -> None:
        if "package" in data:
            package = data["package"]
            out.print(f"[bold]{data['name']}/{data['version']}[/]  {data['digest']}")
            out.print(
                f"flavor {package['flavor']}, {package['signature']['output']['task']}, "
                f"created {_when(data['created_at'])} by {data['created_by']}"
            )
            out.print(f"run {data['run_id'] or '-'}, source {data['source'] or '-'}")
            columns = package["signature"]["inputs"]
            out.print(
                table(
                    "signature",
                    ["column", "dtype", "kind", "range / categories"],
                    [
                        [
                            c["name"],
                            c["dtype"],
                            c["kind"],
                            f"[{c.get('min')}, {c.get('max')}]"
                            if c["kind"] == "numeric"
                            else ", ".join(map(str, (c.get("categories") or [])[:8])),
                        ]
                        for c in columns
                    ],
                )
            )
            if data["metrics"]:
                out.print(
                    "metrics: "
                    + ", ".join(
                        f"{k}={v:.4g}"
                        for k, v in data["metrics"].items()
                        if isinstance(v, int | float)
                    )
                )
            return
        out.print(f"[bold]{data['name']}[/]  {data['description'] or ''}")
        by_version: dict[int, list[str]] = {}
        for alias, version in data["aliases"].items():
            by_version.setdefault(version, []).append(alias)
        out.print(
            table(None, ["version", "aliases", "flavor", "created (UTC)", "by", "run", "source", "tags"], [
                [v["version"], ", ".join(by_version.get(v["version"], [])), v["flavor"],
                 _when(v["created_at"]), v["created_by"], (v["run_id"] or "")[:8], v["source"],
                 ", ".join(f"{k}={t}" for k, t in v["tags"].items())]
                for v in data["versions"]
            ])
        )  # fmt: skip

    emit(data, as_json, render)


@models_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="The model.")],
    alias: Annotated[str | None, typer.Option(help="Only this alias's moves.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit trail of a model: registrations, alias moves, gate results, tags."""
    from mlcd.project import Project
    from mlcd.registry import history as query

    with Project.open() as project:
        rows = query(project.store, name, alias)

    def render(out: Any) -> None:
        out.print(
            table(None, ["when (UTC)", "event", "version", "alias", "from", "actor", "reason", "report"], [
                [_when(r["at"]), r["kind"], r["version"], r["alias"], r["from_version"], r["actor"],
                 r["reason"], (r["report_digest"] or "")[:12]]
                for r in rows
            ])
        )  # fmt: skip

    emit(rows, as_json, render)


# ---------------------------------------------------------------- write
@models_app.command("register")
def register_version(
    name: Annotated[str, typer.Argument(help="The model name.")],
    path: Annotated[
        Path,
        typer.Argument(help="A package folder written by mlcd.save_model, or a model file."),
    ],
    flavor: Annotated[
        str | None,
        typer.Option(help="For a model file: sklearn, xgboost or lightgbm."),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="For a model file: training rows (CSV/Parquet) for the signature."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="For --sample: the label column to leave out (default: models.NAME.target)."
        ),
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="The run that made it.")] = None,
    source: Annotated[str | None, typer.Option(help="Where it came from (free text).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE tags (repeatable).")] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow reading a pickle/joblib file (runs its code).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register a package or a model file made outside a pipeline (same again: same version)."""
    from mlcd.errors import UsageError
    from mlcd.project import Project
    from mlcd.registry import register_from_path

    tags = _parse_tags(tag or [])
    if not path.exists():
        raise UsageError(f"{path} does not exist", hint="give a package folder or a model file")
    if path.is_file() and flavor is None:
        raise UsageError(
            f"{path} is a file, not a model package: say how to read it",
            hint="add --flavor sklearn|xgboost|lightgbm (and --trust for a pickle/joblib file)",
        )
    if path.is_dir() and (flavor is not None or sample is not None):
        raise UsageError(
            f"{path} is a model package: --flavor and --sample are for model files",
            hint="drop them; the package's model.yaml already says both",
        )
    with Project.open() as project:
        if path.is_file():
            from mlcd.registry.model_file import read_sample, register_file

            assert flavor is not None
            declared = project.config.models.get(name)
            result = register_file(
                project.store, project.objects, name, path, flavor, trusted=trust,
                sample=None if sample is None else read_sample(sample), run_id=run,
                source=source, tags=tags, target=target or (declared.target if declared else None),
                on_note=note,
            )  # fmt: skip
        else:
            result = register_from_path(
                project.store, project.objects, name, path, run_id=run,
                source=source or str(path), tags=tags,
            )  # fmt: skip
        if name in project.config.models or project.config.monitor.reference:
            # A declared model gets its monitoring reference here too, as after `mlcd run`.
            from mlcd.registration import profile_reference, record_eval_window
            from mlcd.registry import fetch

            package = fetch(project.objects, result.version, project.state_dir / "cache" / "models")
            profile_reference(
                project.root, project.config, project.store, project.objects, name,
                result.version.version, package,
            )  # fmt: skip
            record_eval_window(
                project.root, project.config, project.store, project.objects, name,
                result.version.version,
            )  # fmt: skip

    def render(out: Any) -> None:
        verb = "registered" if result.created else "already registered as"
        out.print(f"{verb} [bold]{result.version.ref}[/] ({result.version.digest[:12]})")

    emit(result.to_dict(), as_json, render)


def _parse_tags(items: list[str]) -> dict[str, str]:
    from mlcd.errors import UsageError

    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid tag {item!r}", hint="write tags as KEY=VALUE")
        tags[key] = value
    return tags


@models_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="The model.")],
    version: Annotated[str, typer.Argument(help="A version number, 'latest' or '@ALIAS'.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="The alias to move.")] = "champion",
    force: Annotated[
        bool, typer.Option("--force", help="Skip the gates (needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    data: Annotated[Path | None, typer.Option(help="Evaluation data (default: eval_data).")] = None,
    target: Annotated[str | None, typer.Option(help="Label column (default: target).")] = None,
    against: Annotated[str, typer.Option(help="Alias relative gates compare with.")] = "champion",
    report_dir: Annotated[Path | None, typer.Option(help="Where to write reports.")] = None,
    plotly: Annotated[
        str,
        typer.Option(
            "--plotly", help="HTML reports: inline, or directory (one shared plotly.min.js)."
        ),
    ] = "inline",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    trust: TrustOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias to a version through the alias's gates. Exit 1 if a gate fails."""
    from mlcd import plotlyjs
    from mlcd.evaluate.promotion import promote as run_promotion
    from mlcd.project import Project

    plotlyjs.check(plotly)
    with Project.open() as project:
        number = _version_number(project, name, version)
        spec = _model_spec(project, name)
        gates = project.config.gates.get(alias, [])
        with step_progress(f"promoting {name}/{number}", not as_json) as progress:
            result = run_promotion(
                project.store,
                project.objects,
                name,
                number,
                alias,
                gates=gates,
                data=_data_path(project, name, data) if gates and not force else None,
                target=target or (spec.target if spec else None),
                task=spec.task if spec else None,
                slices=spec.slices if spec else None,
                against=against,
                force=force,
                reason=reason,
                report_dir=_report_dir(project, name, number, report_dir) if gates else None,
                resamples=resamples,
                cache_dir=project.state_dir / "cache" / "models",
                trusted=trust,
                progress=progress,
                plotly=plotly,
            )

    def render(out: Any) -> None:
        evaluation = result.evaluation
        if evaluation is not None and evaluation.reused_from:
            out.print(
                f"reusing evaluation from {_when(evaluation.created_at)} UTC "
                f"(report {evaluation.reused_from[:12]}): same candidate, champion, data and gates"
            )
        if result.move is None:
            out.print(result.note or "nothing to do")
            return
        before = result.move.from_version
        how = " [yellow](forced: gates skipped)[/]" if result.forced else ""
        out.print(
            f"[green]{name}@{alias}[/]: {before if before is not None else 'unset'} → {number}{how}"
        )
        if result.evaluation is not None:
            out.print(result.evaluation.verdict.summary())
        if "md" in result.reports:
            out.print(f"report: {result.reports['md']}")

    emit(result.to_dict(), as_json, render)


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="The model.")],
    alias: Annotated[
        str, typer.Option("--alias", "-a", help="The alias to move back.")
    ] = "champion",
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to the version it pointed at before its last move."""
    from mlcd.project import Project
    from mlcd.registry import rollback as run_rollback

    with Project.open() as project:
        move = run_rollback(project.store, name, alias, reason=reason)
    emit(
        move.to_dict(),
        as_json,
        lambda out: out.print(
            f"[green]{name}@{alias}[/]: {move.from_version} → {move.to_version} (rolled back)"
        ),
    )


@models_app.command("tag")
def tag(
    name: Annotated[str, typer.Argument(help="The model.")],
    version: Annotated[str, typer.Argument(help="A version number, 'latest' or '@ALIAS'.")],
    tags: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE pairs to set.")] = None,
    remove: Annotated[list[str] | None, typer.Option(help="Tag keys to remove.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set or remove tags on a version."""
    from mlcd.project import Project
    from mlcd.registry import tag as run_tag

    with Project.open() as project:
        number = _version_number(project, name, version)
        result = run_tag(project.store, name, number, _parse_tags(tags or []), remove or [])
    emit(
        {"name": name, "version": number, "tags": result},
        as_json,
        lambda out: out.print(
            f"{name}/{number}: " + (", ".join(f"{k}={v}" for k, v in result.items()) or "no tags")
        ),
    )


# ---------------------------------------------------------------- evaluate
def evaluate(
    name: Annotated[str, typer.Argument(help="The model.")],
    candidate: Annotated[str, typer.Option(help="Candidate version: number, 'latest', '@ALIAS'.")],
    against: Annotated[str, typer.Option(help="The alias to compare with.")] = "champion",
    alias: Annotated[
        str | None, typer.Option(help="Check the gates of this alias (default: --against).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Evaluation data (default: eval_data).")] = None,
    target: Annotated[str | None, typer.Option(help="Label column (default: target).")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Where to write reports.")] = None,
    plotly: Annotated[
        str,
        typer.Option(
            "--plotly", help="HTML reports: inline, or directory (one shared plotly.min.js)."
        ),
    ] = "inline",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    confidence: Annotated[float, typer.Option(help="Interval confidence, 0-1.")] = 0.95,
    trust: TrustOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Score a candidate against the champion on held-out data; exit 1 if a gate fails, 3 if
    a latency gate was too noisy to judge."""
    from mlcd import plotlyjs
    from mlcd.errors import GateFailed, UsageError
    from mlcd.evaluate import evaluate as run_evaluation
    from mlcd.evaluate import record_evaluation, write_reports
    from mlcd.evaluate.reports import render_markdown
    from mlcd.project import Project

    gates_alias = alias or against
    plotlyjs.check(plotly)
    with Project.open() as project:
        number = _version_number(project, name, candidate)
        spec = _model_spec(project, name)
        path = _data_path(project, name, data)
        if path is None:
            raise UsageError(
                f"no evaluation data for {name}",
                hint=f"pass --data PATH or set models.{name}.eval_data in mlcd.yaml",
            )
        with step_progress(f"evaluating {name}/{number}", not as_json) as progress:
            evaluation = run_evaluation(
                project.store,
                project.objects,
                name,
                number,
                data=path,
                target=target or (spec.target if spec else None),
                task=spec.task if spec else None,
                against=against,
                gates=project.config.gates.get(gates_alias, []),
                gates_alias=gates_alias,
                slices=spec.slices if spec else None,
                resamples=resamples,
                confidence=confidence,
                cache_dir=project.state_dir / "cache" / "models",
                trusted=trust,
                progress=progress,
            )
            progress("writing reports")
            digest = record_evaluation(project.store, project.objects, evaluation)
            written = write_reports(
                evaluation, _report_dir(project, name, number, report_dir), plotly=plotly
            )

    payload = {
        **evaluation.to_dict(),
        "report_digest": digest,
        "reports": {k: str(v) for k, v in written.items()},
    }

    def render(out: Any) -> None:
        out.print(render_markdown(evaluation), markup=False)
        out.print(f"reports: {written['md'].parent}")

    emit(payload, as_json, render)
    if evaluation.status == "inconclusive":
        from mlcd.errors import GateInconclusive

        raise GateInconclusive(
            f"inconclusive: {name}/{number} could not be judged against the gates of "
            f"'{gates_alias}' (no gate failed): {evaluation.verdict.summary()}",
            hint=f"evaluate again on a quieter runner, or give the budget more room; see {written['md']}",
        )
    if not evaluation.passed:
        raise GateFailed(
            f"{name}/{number} failed the gates of '{gates_alias}': {evaluation.verdict.summary()}",
            hint=f"see {written['md']}",
        )


def register(app: typer.Typer) -> None:
    """Attach ``models`` and ``evaluate`` to the root app."""
    app.add_typer(models_app, name="models")
    app.command("evaluate")(evaluate)
