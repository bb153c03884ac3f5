"""``mlcd serve NAME[@ALIAS]``: the model server (uvicorn, one worker process per ``--workers``).

The command resolves the references first (so a typo fails at once with exit 2/3, not as a
server that never gets ready), then starts uvicorn on the app that
:func:`worker_app` builds from the project in each worker process. SIGHUP makes every worker
check its aliases at once; SIGTERM drains (readiness off, in-flight requests finish).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

_SPEC_ENV = "MLCD_SERVE_SPEC"
DEFAULT_ALIAS = "champion"


def serve(
    model: Annotated[
        str,
        typer.Argument(
            help="NAME@ALIAS to follow (NAME alone follows @champion), or NAME/VERSION to pin."
        ),
    ],
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default 8000, or serve.port).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (one per core is fastest; default serve.workers)."),
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(help="ALIAS:PERCENT: send that share of requests to a second alias."),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(help="ALIAS: send a copy of each request there; answers are only logged."),
    ] = None,
    drain_seconds: Annotated[
        float, typer.Option(help="On SIGTERM, report not-ready this long before closing.")
    ] = 0.0,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not write the prediction log.")
    ] = False,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow pickle-based model packages.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this PEM certificate (chain).")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="The certificate's PEM private key (with --ssl-certfile).")
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", "-C", help="Project folder.")] = Path("."),
    engine: Annotated[
        str,
        typer.Option(
            help="uvicorn (processes on this machine) or ray (a Ray Serve deployment on the "
            "cluster in RAY_ADDRESS)."
        ),
    ] = "uvicorn",
    replicas: Annotated[
        int | None, typer.Option(help="--engine ray: how many replicas (default 1).")
    ] = None,
    autoscale: Annotated[
        str | None,
        typer.Option(help="--engine ray: MIN:MAX replicas, added and removed with the load."),
    ] = None,
) -> None:
    """Serve a registered model over HTTP, following its alias as it moves."""
    from mlcd.errors import UsageError
    from mlcd.project import Project
    from mlcd.serve.auth import static_tokens
    from mlcd.serve.traffic import CanarySpec

    static_tokens(os.environ)  # a weak MLCD_*_TOKEN fails now, with exit 2
    tls = _tls(ssl_certfile, ssl_keyfile)
    ref = model if ("@" in model or "/" in model) else f"{model}@{DEFAULT_ALIAS}"
    canary_spec = CanarySpec.parse(canary) if canary else None
    project = Project.open(directory)
    settings = project.config.serve
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if workers is not None:
        if workers < 1:
            raise UsageError("--workers must be at least 1")
        updates["workers"] = workers
    settings = settings.model_copy(update=updates) if updates else settings
    name = ref.split("@", 1)[0] if "@" in ref else ref.rsplit("/", 1)[0]
    _check_refs(project, [ref])
    _check_followed(project, name, _aliases(canary_spec, shadow))
    project.close()
    _note_auth(settings)
    if engine != "uvicorn" or replicas is not None or autoscale is not None:
        _serve_on_ray(
            project, ref, name, settings, engine, replicas, autoscale, workers, tls,
            [canary_spec.alias, canary_spec.percent] if canary_spec else None,
            shadow, not no_log, trust,
        )  # fmt: skip
        return

    spec: dict[str, Any] = {
        "root": str(project.root),
        "ref": ref,
        "canary": [canary_spec.alias, canary_spec.percent] if canary_spec else None,
        "shadow": shadow,
        "drain_seconds": drain_seconds,
        "log": not no_log,
        "trust": trust,
        "settings": settings.model_dump(),
        "metrics_dir": None,
    }
    if settings.workers > 1:
        import tempfile

        # prometheus-client shares counters between worker processes through this folder;
        # it must be set before any worker imports prometheus_client.
        metrics_dir = tempfile.mkdtemp(prefix="mlcd-metrics-")
        spec["metrics_dir"] = metrics_dir
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[_SPEC_ENV] = json.dumps(spec)
    # Requests are scored a few rows at a time: OpenMP thread pools (LightGBM, XGBoost,
    # scikit-learn's gradient boosting) only add start-up cost per call and fight the
    # workers for the cores. Concurrency comes from --workers. The user may override.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        _run_uvicorn(settings, log_level, tls)
    finally:
        # uvicorn returns here on SIGTERM/SIGINT too: leave no metrics folder behind.
        if spec["metrics_dir"]:
            import shutil

            shutil.rmtree(spec["metrics_dir"], ignore_errors=True)


def _serve_on_ray(
    project: Any,
    ref: str,
    name: str,
    settings: Any,
    engine: str,
    replicas: int | None,
    autoscale: str | None,
    workers: int | None,
    tls: dict[str, str],
    canary: list[Any] | None,
    shadow: str | None,
    log: bool,
    trust: bool,
) -> None:
    """``--engine ray``: check the flags that go with it, then hand over to Ray Serve."""
    from mlcd.cli.output import err_console
    from mlcd.errors import UsageError
    from mlcd.serve import ray_engine

    if engine != "ray":
        if engine != "uvicorn":
            raise UsageError(f"--engine {engine!r}: use uvicorn or ray")
        raise UsageError("--replicas and --autoscale go with --engine ray")
    if workers is not None:
        raise UsageError("--workers is for --engine uvicorn", hint="use --replicas N with Ray")
    if tls:
        raise UsageError(
            "--engine ray does not serve HTTPS itself",
            hint="terminate TLS in front of the Ray Serve proxy (a load balancer, an ingress)",
        )
    scaling = ray_engine.Scaling.parse(replicas, autoscale)
    spec = {
        "name": name,
        "ref": ref,
        "root": str(project.root),
        "store": project.store.url,
        "artifacts": project.objects.url,
        "canary": canary,
        "shadow": shadow,
        "log": log,
        "trust": trust,
        "settings": settings.model_dump(),
        "monitor": project.config.monitor.model_dump(),
    }
    ray_engine.run(
        spec, scaling, os.environ, announce=lambda t: err_console().print(t, markup=False)
    )


def _tls(certfile: Path | None, keyfile: Path | None) -> dict[str, str]:
    """uvicorn's TLS options, after checking both files are given and readable."""
    from mlcd.errors import UsageError

    if certfile is None and keyfile is None:
        return {}
    if certfile is None or keyfile is None:
        raise UsageError("--ssl-certfile and --ssl-keyfile go together: give both")
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not path.is_file():
            raise UsageError(f"{option} {path}: no such file")
    return {"ssl_certfile": str(certfile.resolve()), "ssl_keyfile": str(keyfile.resolve())}


def _note_auth(settings: Any) -> None:
    """Say who may predict once the server is reachable beyond this machine."""
    from mlcd.cli.output import err_console
    from mlcd.serve.auth import is_loopback

    if is_loopback(settings.host):
        return
    if settings.public_predict:
        what = "predict is open to anyone who reaches the port (serve.public_predict: true)"
    else:
        what = (
            "predict needs a token with the 'predict' role "
            "('mlcd tokens create NAME --role predict', or MLCD_PREDICT_TOKEN)"
        )
    err_console().print(
        f"note: bound to {settings.host}: {what}; feedback needs a 'feedback' token; "
        "add the host names clients use to serve.allowed_hosts",
        markup=False,
    )


def _aliases(canary: Any, shadow: str | None) -> list[str]:
    return [a for a in (canary.alias if canary else None, shadow) if a]


def _check_refs(project: Any, refs: list[str]) -> None:
    from mlcd.registry import resolve

    for ref in refs:
        resolve(project.store, ref)  # NotFound / UsageError name what is wrong


def _check_followed(project: Any, name: str, aliases: list[str]) -> None:
    """Canary and shadow aliases may be set after the server starts (a retrain policy
    promotes to ``challenger`` while it runs): an unset one is a note, not an error."""
    from mlcd.cli.output import err_console
    from mlcd.errors import NotFound
    from mlcd.registry import resolve

    for alias in aliases:
        try:
            resolve(project.store, f"{name}@{alias}")
        except NotFound as exc:
            err_console().print(
                f"note: {exc.message}; it gets its traffic once the alias is set", markup=False
            )


def _run_uvicorn(settings: Any, log_level: str, tls: dict[str, str]) -> None:
    import importlib.util

    import uvicorn

    from mlcd.serve.server import uvicorn_config

    workers = settings.workers
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    config = uvicorn_config(
        "mlcd.cli.serve_cmd:worker_app",
        settings,
        factory=True,
        loop=loop,
        log_level=log_level,
        timeout_graceful_shutdown=60,
        **tls,
    )
    if workers > 1:
        from uvicorn.supervisors.multiprocess import Multiprocess

        class _Supervisor(Multiprocess):
            """uvicorn's supervisor, but SIGHUP reaches the workers (they re-check aliases)
            instead of restarting them, which would drop their loaded models."""

            def handle_hup(self) -> None:
                import signal

                for process in self.processes:
                    if process.pid is not None:
                        os.kill(process.pid, signal.SIGHUP)

        sock = config.bind_socket()
        _Supervisor(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run()


def worker_app() -> Any:
    """The app of one worker process, built from the spec ``mlcd serve`` left in the environment."""
    import logging

    from mlcd.cli.output import guard_streams

    guard_streams()  # a spawned worker (--workers > 1) logs through masked streams too
    from mlcd.config import Serve
    from mlcd.project import Project
    from mlcd.serve.app import create_app
    from mlcd.serve.auth import Authenticator, static_tokens
    from mlcd.serve.holder import RegistrySource
    from mlcd.serve.traffic import CanarySpec

    spec = json.loads(os.environ[_SPEC_ENV])
    logging.getLogger("mlcd").setLevel(logging.INFO)
    if not logging.getLogger("mlcd").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logging.getLogger("mlcd").addHandler(handler)
    project = Project.open(spec["root"])
    cache = project.state_dir / "cache" / "models"
    source = RegistrySource(project.store, project.objects, cache, trusted=spec["trust"])
    canary = CanarySpec(spec["canary"][0], float(spec["canary"][1])) if spec["canary"] else None
    return create_app(
        source,
        spec["ref"],
        store=project.store,
        settings=Serve.model_validate(spec["settings"]),
        log_folder=project.state_dir / "predictions" if spec["log"] else None,
        project_root=project.root,
        canary=canary,
        shadow=spec["shadow"],
        drain_grace_s=float(spec["drain_seconds"]),
        metrics_dir=spec["metrics_dir"],
        monitor=project.config.monitor,
        auth=Authenticator(project.store, static_tokens(os.environ)),
    )


def register(app: typer.Typer) -> None:
    """Attach ``serve`` to the root app."""
    app.command("serve")(serve)
