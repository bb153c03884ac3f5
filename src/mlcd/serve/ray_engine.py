"""Ray Serve as the engine: ``mlcd serve NAME@ALIAS --engine ray`` (``pip install 'mlcd[ray]'``).

Each replica of the Ray Serve deployment builds the same application as ``mlcd serve``
(:func:`mlcd.serve.app.create_app`: validation, mlcd's and the OIP v2 endpoints, auth, the
prediction log, canary and shadow) and follows the alias on its own, as a uvicorn worker
does, so an alias move swaps every replica in place with no failed request. A replica opens
the project's metadata store and object store by URL (PostgreSQL and S3 on a real cluster)
and keeps its model cache in a temp folder of its node; it joins the traffic only once its
model is loaded, so a new replica (a scale-up, a replaced one) never answers "not loaded".

``RAY_ADDRESS`` names the cluster (without it a local Ray instance is started). The command
stays in the foreground like ``mlcd serve``; SIGTERM or Ctrl-C deletes the application.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import ConfigError, ServeError, UsageError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

log = logging.getLogger("mlcd.serve")

#: Environment passed on to the replicas: object-store and PostgreSQL clients (``PGPASSWORD``
#: keeps a password out of the store URL), tokens, thread limits.
_REPLICA_ENV = ("AWS_", "GOOGLE_", "GCS_", "AZURE_", "FSSPEC_", "BOTO_", "PG", "MLCD_", "OMP_")
#: Where Serve runs its HTTP proxies: ``EveryNode`` (Ray's default), ``HeadOnly``, ``Disabled``.
PROXY_ENV = "MLCD_RAY_PROXY"
#: CPUs each replica reserves (default 1).
REPLICA_CPUS_ENV = "MLCD_RAY_REPLICA_CPUS"
#: Autoscaling delays in seconds (defaults 10 and 60), for a load profile faster or slower
#: than the defaults follow.
UPSCALE_DELAY_ENV = "MLCD_RAY_UPSCALE_DELAY_S"
DOWNSCALE_DELAY_ENV = "MLCD_RAY_DOWNSCALE_DELAY_S"
#: Seconds of load history each autoscaling decision averages (Ray's default 30): shorter
#: follows a changing load sooner, longer ignores short bursts.
LOOK_BACK_ENV = "MLCD_RAY_LOOK_BACK_S"
#: How long a new replica may take to load its model before Serve counts it as failed.
LOAD_TIMEOUT_S = 300.0


def _delay(name: str, default: float, *, positive: bool = False) -> float:
    """A delay in seconds from the environment variable ``name``, or ``default``.

    Raises:
        UsageError: the variable is set but is not a number of seconds >= 0 (> 0 with
            ``positive``).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf") or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise UsageError(
            f"{name}={raw!r} is not a number of seconds",
            hint=f"set it to a delay like 10 (seconds, {bound}) or unset it for {default:g}",
        )
    return value


@dataclass(frozen=True)
class Scaling:
    """A fixed number of replicas, or autoscaling between ``minimum`` and ``maximum``."""

    replicas: int = 1
    minimum: int | None = None
    maximum: int | None = None
    #: autoscaling: seconds of sustained load before adding a replica, and of quiet before
    #: removing one (Ray's defaults are 30 and 600: too slow to follow a load test)
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 60.0
    look_back_s: float = 30.0

    @classmethod
    def parse(cls, replicas: int | None, autoscale: str | None) -> Scaling:
        """From ``--replicas N`` or ``--autoscale MIN:MAX`` (at most one of them).

        Raises:
            UsageError: both given, or a count that is not a positive integer.
        """
        if replicas is not None and autoscale is not None:
            raise UsageError(
                "--replicas and --autoscale exclude each other",
                hint="give a fixed count (--replicas 2) or a range (--autoscale 1:3)",
            )
        if autoscale is None:
            count = 1 if replicas is None else replicas
            if count < 1:
                raise UsageError(f"--replicas {count}: at least 1 replica is needed")
            return cls(replicas=count)
        low, sep, high = autoscale.partition(":")
        try:
            minimum, maximum = int(low), int(high)
        except ValueError:
            minimum = maximum = -1
        if not sep or minimum < 1 or maximum < minimum:
            raise UsageError(
                f"--autoscale {autoscale!r} is not MIN:MAX",
                hint="like --autoscale 1:3 (at least one replica, MAX not below MIN)",
            )
        return cls(
            replicas=minimum,
            minimum=minimum,
            maximum=maximum,
            upscale_delay_s=_delay(UPSCALE_DELAY_ENV, cls.upscale_delay_s),
            downscale_delay_s=_delay(DOWNSCALE_DELAY_ENV, cls.downscale_delay_s),
            look_back_s=_delay(LOOK_BACK_ENV, cls.look_back_s, positive=True),
        )

    def options(self) -> dict[str, Any]:
        """The deployment options Ray Serve takes."""
        if self.minimum is None:
            return {"num_replicas": self.replicas}
        return {
            "autoscaling_config": {
                "min_replicas": self.minimum,
                "max_replicas": self.maximum,
                "initial_replicas": self.minimum,
                "target_ongoing_requests": 2,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
                "look_back_period_s": self.look_back_s,
            }
        }


def replica_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` a replica needs (store clients, tokens)."""
    env = {k: v for k, v in environ.items() if k.startswith(_REPLICA_ENV)}
    env.setdefault("OMP_NUM_THREADS", "1")  # concurrency comes from replicas, not threads
    return env


def build_app(spec: Mapping[str, Any]) -> FastAPI:
    """The app of one replica, from what ``mlcd serve`` resolved (runs in the replica).

    The prediction log goes to ``monitor.log_location`` when it is remote (S3), else to the
    project's folder when this node sees it (one machine, a shared filesystem); elsewhere
    the replica serves without it and says so in its log.
    """
    import tempfile

    from mlcd.config import Monitor, Serve
    from mlcd.objects import open_object_store
    from mlcd.serve.app import create_app
    from mlcd.serve.auth import Authenticator, static_tokens
    from mlcd.serve.holder import RegistrySource
    from mlcd.serve.traffic import CanarySpec
    from mlcd.store import Store

    store = Store(spec["store"])
    objects = open_object_store(spec["artifacts"])
    cache = Path(tempfile.mkdtemp(prefix="mlcd-serve-models-"))
    source = RegistrySource(store, objects, cache, trusted=bool(spec["trust"]))
    canary = CanarySpec(spec["canary"][0], float(spec["canary"][1])) if spec["canary"] else None
    root = Path(spec["root"])
    location = str(spec["monitor"].get("log_location") or "")
    remote_log = "://" in location and not location.startswith("file://")
    log_folder = None
    if spec["log"]:
        if remote_log or root.is_dir():  # monitor.log_location, else the project's folder
            log_folder = root / ".mlcd" / "predictions"
        else:
            log.warning(
                "the project folder %s is not on this node and monitor.log_location is not "
                "remote: this replica keeps no prediction log",
                root,
            )
    app = create_app(
        source,
        spec["ref"],
        store=store,
        settings=Serve.model_validate(spec["settings"]),
        log_folder=log_folder,
        project_root=root if log_folder is not None else None,
        canary=canary,
        shadow=spec["shadow"],
        monitor=Monitor.model_validate(spec["monitor"]),
        auth=Authenticator(store, static_tokens(os.environ)),
    )
    _ready_before_traffic(app, float(spec.get("load_timeout_s", LOAD_TIMEOUT_S)), cache)
    return app


def _ready_before_traffic(app: FastAPI, timeout_s: float, cache: Path) -> None:
    """Make the app's startup wait until its model is loaded: Serve sends a replica traffic
    only once its startup is over, so no request meets an empty replica. The replica's model
    cache goes when it stops."""
    import asyncio
    import shutil
    import time

    service = app.state.service
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        try:
            async with original(application) as state:
                deadline = time.monotonic() + timeout_s
                while not service.ready:
                    primary = service.primary
                    if time.monotonic() > deadline:
                        raise ServeError(
                            f"{primary.ref}: no version loaded after {timeout_s:.0f} s "
                            f"({primary.last_error or 'still loading'})"
                        )
                    await asyncio.sleep(0.1)
                yield state
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    app.router.lifespan_context = lifespan


def _deployment(spec: Mapping[str, Any], scaling: Scaling, environ: Mapping[str, str]) -> Any:
    """The Ray Serve application (``Deployment.bind()``) of one model."""
    from ray import serve

    frozen = dict(spec)

    @serve.ingress()
    class MlcdModelServer:
        """One replica: the model server's app, built when the replica starts."""

        def __serve_build_asgi_app__(self) -> Any:
            return build_app(frozen)

    cpus = float(environ.get(REPLICA_CPUS_ENV) or 1)
    settings = spec["settings"]
    deployment = serve.deployment(
        name=f"mlcd-{spec['name']}",
        max_ongoing_requests=int(settings.get("max_concurrency", 64)),
        ray_actor_options={
            "num_cpus": cpus,
            "runtime_env": {"env_vars": replica_env(environ)},
        },
        **scaling.options(),
    )(MlcdModelServer)
    return deployment.bind()


def _proxy_location(environ: Mapping[str, str]) -> str | None:
    value = environ.get(PROXY_ENV)
    if value is None or value == "":
        return None
    if value not in ("EveryNode", "HeadOnly", "Disabled"):
        raise ConfigError(
            f"{PROXY_ENV}={value!r} is not a proxy location",
            hint="use EveryNode (Ray's default), HeadOnly or Disabled",
        )
    return value


def deploy(spec: Mapping[str, Any], scaling: Scaling, environ: Mapping[str, str]) -> str:
    """Deploy the model's application on the cluster and wait until it is running (every
    initial replica has its model loaded); returns the application's name.

    Raises:
        ConfigError: Ray Serve is not installed, or ``MLCD_RAY_PROXY`` is invalid.
        ServeError: the application could not start (the message says why).
    """
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray Serve", hint="pip install 'mlcd[ray]'") from exc
    from mlcd.pipeline.executors.ray import init_ray

    init_ray(ray)
    settings = spec["settings"]
    serve.start(
        proxy_location=_proxy_location(environ),
        http_options={"host": settings["host"], "port": int(settings["port"])},
    )
    name = f"mlcd-{spec['name']}"
    try:
        serve.run(_deployment(spec, scaling, environ), name=name, route_prefix="/")
    except Exception as exc:  # Serve reports a failed deployment as a RuntimeError
        raise ServeError(
            f"Ray Serve could not start {spec['ref']}: {exc}",
            hint="the replicas' logs are in the Ray session folder (logs/serve/)",
        ) from exc
    return name


def replica_counts(name: str) -> dict[str, int]:
    """Replicas of the application by state (``RUNNING``, ``STARTING``...)."""
    from ray import serve

    status = serve.status().applications.get(name)
    if status is None:
        return {}
    counts: dict[str, int] = {}
    for deployment in status.deployments.values():
        for state, count in deployment.replica_states.items():
            counts[str(getattr(state, "value", state))] = (
                counts.get(str(getattr(state, "value", state)), 0) + count
            )
    return counts


def run(
    spec: Mapping[str, Any],
    scaling: Scaling,
    environ: Mapping[str, str],
    announce: Any = print,
) -> None:
    """Deploy, then stay in the foreground until SIGTERM or Ctrl-C, then delete the app."""
    from ray import serve

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    name = None
    try:
        name = deploy(spec, scaling, environ)
        settings = spec["settings"]
        how = (
            f"{scaling.replicas} replica(s)"
            if scaling.minimum is None
            else f"{scaling.minimum} to {scaling.maximum} replicas"
        )
        announce(
            f"serving {spec['ref']} on Ray Serve as '{name}' ({how}) at "
            f"http://{settings['host']}:{settings['port']}"
        )
        stop.wait()
    finally:
        if name is not None:
            announce(f"deleting the Ray Serve application '{name}'")
            serve.delete(name)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
