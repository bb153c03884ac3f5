"""The FastAPI app: mlcd's predict endpoint, the Open Inference Protocol v2, feedback, metrics.

:func:`create_app` takes ready-made objects (a model source, the metadata store, settings)
and never reads configuration itself; ``mlcd serve`` builds them from ``mlcd.yaml``.

The two hot endpoints (``POST /v1/models/{name}/predict`` and ``POST /v2/models/{name}/infer``)
are answered by a pure ASGI layer in front of FastAPI, which enforces the body limit while
reading and hands the raw bytes to :class:`~mlcd.serve.service.PredictionService`; FastAPI
still declares them so that ``/docs`` shows them. Everything else is ordinary FastAPI.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from mlcd import __version__
from mlcd.config import Monitor, Serve
from mlcd.serve import oip
from mlcd.serve import openapi as api
from mlcd.serve.auth import Authenticator, is_loopback
from mlcd.serve.fleet import FleetCollector, FleetMember
from mlcd.serve.gauges import LiveGauges
from mlcd.serve.holder import ModelHolder, ModelSource
from mlcd.serve.metrics import ServeMetrics
from mlcd.serve.predlog import PredictionLog
from mlcd.serve.service import CONCURRENCY_LIMIT, JSON, Answer, PredictionService
from mlcd.serve.traffic import CanaryGuard, CanarySpec

if TYPE_CHECKING:
    from mlcd.store import Store

log = logging.getLogger("mlcd.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class OrjsonResponse(Response):
    """JSON rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def create_app(
    source: ModelSource,
    ref: str,
    *,
    store: Store | None = None,
    settings: Serve | None = None,
    log_folder: Path | None = None,
    project_root: Path | None = None,
    canary: CanarySpec | None = None,
    shadow: str | None = None,
    guard: CanaryGuard | None = None,
    drain_grace_s: float = 0.0,
    metrics_dir: str | None = None,
    monitor: Monitor | None = None,
    auth: Authenticator | None = None,
) -> FastAPI:
    """The model server's ASGI app.

    Args:
        source: where model versions come from (``RegistrySource`` in production).
        ref: what to serve: ``name@alias`` (followed as it moves) or ``name/3`` (pinned).
        store: the metadata store, for prediction-log segments, feedback and audit events.
        settings: limits, polling and prediction-log options (``mlcd.yaml``'s ``serve:``).
        log_folder: where prediction-log segments go (``<state>/predictions``); None turns
            the prediction log off.
        project_root: segment paths are registered relative to it.
        canary: a second alias that answers a share of the requests.
        shadow: a third alias that answers a copy of each request, logged and not returned.
        guard: the rule that switches a bad canary off (default :class:`CanaryGuard`).
        drain_grace_s: on SIGTERM, report not-ready for this long before shutting down.
        metrics_dir: the prometheus-client multiprocess folder when running several workers.
        monitor: drift settings and the live window (``mlcd.yaml``'s ``monitor:``): versions
            with a stored reference profile get live drift and quality gauges on ``/metrics``.
        auth: checks bearer tokens (default: the store's tokens only); see
            :mod:`mlcd.serve.auth` for who may call what.

    Returns:
        The FastAPI app (its ``state.service`` is the :class:`PredictionService`).
    """
    settings = settings or Serve()
    name = ref.split("@", 1)[0] if "@" in ref else ref.rsplit("/", 1)[0]
    monitor = monitor or Monitor()
    metrics = ServeMetrics(name, metrics_dir)
    gauges = _live_gauges(name, source, monitor, metrics_dir)
    if gauges is not None:
        metrics.add_collector(gauges)
    holder_args: dict[str, Any] = {
        "max_rows": settings.max_rows,
        "poll_interval_s": settings.poll_interval_s,
        "on_load": lambda role, version, ok: metrics.loaded(role, version, ok),
        "on_serve": gauges.watch if gauges is not None else None,
    }
    primary = ModelHolder(source, ref, "primary", **holder_args)
    canary_holder = (
        ModelHolder(source, f"{name}@{canary.alias}", "canary", **holder_args) if canary else None
    )
    shadow_holder = (
        ModelHolder(source, f"{name}@{shadow}", "shadow", **holder_args) if shadow else None
    )
    predlog = None
    options = settings.prediction_log
    logging_on = log_folder is not None and options.enabled
    if logging_on or gauges is not None:
        # The gauges are fed by the log's writer thread; without a log it writes nothing.
        predlog = PredictionLog(
            store,
            project_root or (log_folder.parent if log_folder else Path.cwd()),
            (monitor.log_location or log_folder) if logging_on else None,
            batch_rows=options.batch_rows,
            flush_interval_s=options.flush_interval_s,
            queue_size=options.queue_size,
            on_drop=metrics.log_dropped.inc,
            on_write=metrics.log_written.inc,
            on_batch=gauges.observe if gauges is not None else None,
        )
    if store is not None and guard is not None:
        guard.local = False  # the fleet decides, from every replica's counters
    service = PredictionService(
        name=name,
        primary=primary,
        settings=settings,
        metrics=metrics,
        predlog=predlog,
        store=store,
        canary=canary_holder,
        canary_spec=canary,
        shadow=shadow_holder,
        guard=guard or (CanaryGuard(local=False) if store is not None else None),
    )
    member = (
        FleetMember(store, service, interval_s=settings.fleet_interval_s)
        if store is not None
        else None
    )
    if member is not None:
        service.fleet = member
        metrics.add_collector(FleetCollector(member))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if predlog is not None:
            predlog.start()
        for holder in service.holders:
            holder.start()
        if member is not None:
            member.start()
        restore = _install_signals(service, drain_grace_s)
        try:
            yield
        finally:
            restore()
            if member is not None:
                await asyncio.to_thread(member.stop)
            for holder in service.holders:
                holder.stop()
            await asyncio.to_thread(service.close)
            if predlog is not None:
                await asyncio.to_thread(predlog.close)
            if gauges is not None:
                gauges.close()
            metrics.close()

    app = FastAPI(
        title=f"mlcd model server: {name}",
        version=__version__,
        description="Predictions from the model registry, following an alias. "
        "mlcd's own endpoint and the Open Inference Protocol v2.",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
    )
    app.state.service = service
    _routes(app, service)
    _live_document(app, service)
    app.add_middleware(
        FastPath, service=service, max_body=settings.max_body_bytes, body_s=settings.timeout_s
    )
    _secure(app, settings, auth or Authenticator(store), metrics)
    return app


def _live_document(app: FastAPI, service: PredictionService) -> None:
    """The OpenAPI document with what only the served version knows: which labels feedback
    takes (its classes, or numbers for a regressor). Rebuilt per request of the document, so
    it follows a hot swap; the rest is FastAPI's cached document."""
    import copy

    built = app.openapi

    def document() -> dict[str, Any]:
        schema = copy.deepcopy(built())
        served = service.primary.current
        if served is not None:
            classes = served.classes
            label = (
                {"enum": [c.item() if hasattr(c, "item") else c for c in classes]}
                if classes is not None
                else {"type": "number"}
            )
            operation = schema["paths"]["/v1/feedback"]["post"]
            body = operation["requestBody"]["content"]["application/json"]
            body["schema"] = api.feedback_request(label)
        return schema

    app.openapi = document  # type: ignore[method-assign]


def _secure(app: FastAPI, settings: Serve, auth: Authenticator, metrics: ServeMetrics) -> None:
    """Token checks, then trusted hosts, then security headers (outermost) in front of all."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from mlcd.serve.auth import AuthGate, SecureTransport, allowed_hosts, failure_counter

    open_predict = settings.public_predict or is_loopback(settings.host)
    app.add_middleware(
        AuthGate,
        authenticator=auth,
        open_predict=open_predict,
        on_failure=failure_counter(metrics.registry),
    )
    hosts = allowed_hosts(settings.host, settings.allowed_hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)
    app.add_middleware(SecureTransport)


def _live_gauges(
    name: str, source: ModelSource, monitor: Monitor, metrics_dir: str | None
) -> LiveGauges | None:
    """The live monitoring gauges, unless ``monitor.live_window_rows`` is 0."""
    if monitor.live_window_rows <= 0:
        return None
    from mlcd.monitor.drift import DriftSettings

    return LiveGauges(
        name,
        source,
        settings=DriftSettings.from_config(monitor.drift),
        window_rows=monitor.live_window_rows,
        refresh_s=monitor.live_refresh_s,
        multiprocess_dir=metrics_dir,
    )


def _install_signals(service: PredictionService, grace_s: float) -> Callable[[], None]:
    """SIGHUP: check the aliases now. SIGTERM: not ready, wait ``grace_s``, then uvicorn's exit."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals reach only the main thread (an embedded server)
    loop = asyncio.get_running_loop()

    def hangup() -> None:
        log.info("SIGHUP: checking %s now", ", ".join(h.ref for h in service.holders))
        for holder in service.holders:
            holder.refresh()

    try:
        loop.add_signal_handler(signal.SIGHUP, hangup)
    except (NotImplementedError, RuntimeError):  # pragma: no cover - platforms without it
        pass
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: Any) -> None:
        service.draining = True
        log.info("SIGTERM: not ready any more; finishing in-flight requests")
        if callable(previous):
            if grace_s > 0:
                timer = threading.Timer(grace_s, previous, (signum, frame))
                timer.daemon = True
                timer.start()
            else:
                previous(signum, frame)

    signal.signal(signal.SIGTERM, terminate)

    def restore() -> None:
        try:
            loop.remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass

    return restore


def _readiness(service: PredictionService) -> bytes:
    """The readiness body: the flag, the version served and, in a fleet, the store's health."""
    current = service.primary.current
    body: dict[str, Any] = {
        "ready": service.ready,
        "version": current.version if current is not None else None,
    }
    if service.fleet is not None:
        body.update(service.fleet.health())
    return orjson.dumps(body)


class FastPath:
    """Pure ASGI handling of the predict, feedback and health endpoints, in front of FastAPI.

    The health probes are answered here from two flags, without FastAPI's routing and
    without waiting on anything, so a burst of scoring never delays them.
    """

    def __init__(
        self, app: Any, service: PredictionService, max_body: int, body_s: float = 30.0
    ) -> None:
        self.app = app
        self.service = service
        self.max_body = max_body
        self.body_s = body_s

    async def _body(
        self, endpoint: str, headers: dict[bytes, bytes], receive: Receive
    ) -> bytes | Answer:
        """The body, or the refusal when it is too big or does not arrive in time."""
        try:
            async with asyncio.timeout(self.body_s):
                body = await _read_body(headers, receive, self.max_body)
        except TimeoutError:
            message = (
                f"the request body did not arrive within {self.body_s:g} s: send it at once "
                "(or raise serve.timeout_s)"
            )
            answer = self.service.refuse(endpoint, 408, message, 0.0)
            answer.headers.append((b"connection", b"close"))
            return answer
        return self._too_big(endpoint) if body is None else body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/v1/models/") and path.endswith("/predict"):
                await self._serve("v1", path[11:-8], None, scope, receive, send)
                return
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                name, _sep, version = path[11:-6].partition("/versions/")
                await self._serve("v2", name, version or None, scope, receive, send)
                return
            if path == "/v1/feedback":
                await self._feedback(scope, receive, send)
                return
        elif scope["type"] == "http" and scope["method"] == "GET":
            if scope["path"] == "/v2/health/live":
                await _send(send, Answer(200, b'{"live":true}', []))
                return
            if scope["path"] == "/v2/health/ready":
                ready = self.service.ready
                await _send(send, Answer(200 if ready else 400, _readiness(self.service), []))
                return
        await self.app(scope, receive, send)

    def _too_big(self, endpoint: str) -> Answer:
        message = (
            f"the request body is larger than the limit of {self.max_body} bytes: send "
            "fewer rows per request (or raise serve.max_body_bytes)"
        )
        answer = self.service.refuse(endpoint, 413, message, 0.0)
        answer.headers.append((b"connection", b"close"))
        return answer

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        from mlcd.serve.feedback import store_feedback

        headers = dict(scope["headers"])
        body = await self._body("feedback", headers, receive)
        if isinstance(body, Answer):
            answer = body
        else:
            content_type = headers.get(b"content-type")
            answer = await store_feedback(
                self.service,
                body,
                content_type.decode("latin-1") if content_type else None,
                scope.get("state", {}).get("actor"),
            )
        await _send(send, answer)

    async def _serve(
        self,
        endpoint: str,
        name: str,
        version: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        service = self.service
        if service.in_flight + service.reading >= service.settings.max_concurrency:
            # Refused before the body is kept: it is read and dropped (a client that is still
            # sending would see a reset instead of the 503 if it were not).
            await self._drain(receive)
            await _send(send, service.refuse(endpoint, 503, CONCURRENCY_LIMIT, 0.0))
            return
        headers = dict(scope["headers"])
        service.reading += 1
        try:
            body = await self._body(endpoint, headers, receive)
        finally:
            service.reading -= 1
        if isinstance(body, Answer):
            answer = body
        else:
            answer = await service.handle(endpoint, name, version, body, headers)
        await _send(send, answer)

    async def _drain(self, receive: Receive) -> None:
        """Read and drop a request body (for at most the body deadline)."""
        try:
            async with asyncio.timeout(self.body_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect" or not message.get("more_body"):
                        return
        except TimeoutError:
            return


async def _read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed ``limit``."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, answer: Answer) -> None:
    headers = [
        (b"content-type", JSON),
        (b"content-length", str(len(answer.body)).encode()),
        *answer.headers,
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _answer(answer: Answer) -> Response:
    return Response(
        answer.body,
        status_code=answer.status,
        media_type="application/json",
        headers={k.decode(): v.decode() for k, v in answer.headers},
    )


_PREDICT_BODY = api.body(api.PREDICT_REQUEST, {"columns": ["x1", "x2"], "data": [[1.0, 2.0]]})
_INFER_BODY = api.body(
    api.INFER_REQUEST,
    {
        "id": "42",
        "inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}],
    },
)
_FEEDBACK_BODY = api.body(api.FEEDBACK_REQUEST, {"request_id": "3f9c0a1b2c4d-0", "label": 1})
#: What the predict and infer routes can answer besides 200.
_SCORING = (400, *api.AUTH, 404, 413, 415, 422, 500, 503, 504)


_METADATA = {**api.ok(api.MODEL_METADATA), **api.errors(400, *api.AUTH, 404)}
_READY = {**api.ready_responses(api.MODEL_READY), **api.errors(*api.AUTH, 404)}
_INFER = {**api.ok(api.INFER_RESPONSE), **api.errors(*_SCORING)}


def _routes(app: FastAPI, service: PredictionService) -> None:
    """Declare every endpoint (the two hot ones are answered by :class:`FastPath` first)."""

    async def _raw(request: Request, endpoint: str, name: str, version: str | None) -> Response:
        headers = {k.lower().encode(): v.encode() for k, v in request.headers.items()}
        return _answer(await service.handle(endpoint, name, version, await request.body(), headers))

    @app.post(
        "/v1/models/{name}/predict",
        tags=["mlcd"],
        openapi_extra=_PREDICT_BODY,
        responses={**api.ok(api.PREDICT_RESPONSE), **api.errors(*_SCORING)},
    )
    async def predict(name: str, request: Request) -> Response:
        """Predict rows; returns predictions, probabilities, the version and a request id per row."""
        return await _raw(request, "v1", name, None)

    @app.get(
        "/v1/models/{name}",
        tags=["mlcd"],
        responses={**api.ok(api.MODEL_INFO), **api.errors(*api.AUTH, 404)},
    )
    async def model_info(name: str) -> Response:
        """The served versions, their signature, and the canary and shadow state."""
        if name != service.name:
            return _not_served(service, name)
        out: dict[str, Any] = {"name": service.name, "ready": service.ready}
        for role, holder in (("primary", service.primary), ("canary", service.canary),
                             ("shadow", service.shadow)):  # fmt: skip
            if holder is None:
                continue
            current = holder.current
            out[role] = {
                "follows": holder.ref,
                "version": current.version if current else None,
                "loaded_at": current.loaded_at if current else None,
                "last_error": holder.last_error,
                "failed_loads": holder.failures,
            }
            if role == "primary" and current is not None:
                out["signature"] = current.model.signature.to_dict()
        if service.canary is not None:
            out["canary"]["percent"] = service.router.percent
            out["canary"]["disabled"] = service.canary_disabled
        return OrjsonResponse(out)

    @app.post(
        "/v1/feedback",
        tags=["mlcd"],
        openapi_extra=_FEEDBACK_BODY,
        responses={
            **api.ok(api.FEEDBACK_RESPONSE),
            **api.errors(400, *api.AUTH, 404, 409, 413, 415, 422, 429, 503),
        },
    )
    async def feedback(request: Request) -> Response:
        """Ground-truth labels for earlier request ids: one ``{request_id, label}`` or a list."""
        from mlcd.serve.feedback import store_feedback

        body = await request.body()
        actor = request.scope.get("state", {}).get("actor")
        content_type = request.headers.get("content-type")
        return _answer(await store_feedback(service, body, content_type, actor))

    @app.get("/metrics", tags=["operations"], responses=api.METRICS_RESPONSES)
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    # ---------------------------------------------------------------- Open Inference Protocol
    @app.get("/v2", tags=["open inference protocol"], responses=api.ok(api.SERVER_METADATA))
    async def server_metadata() -> Response:
        """Server metadata."""
        return OrjsonResponse({"name": "mlcd", "version": __version__, "extensions": []})

    @app.get("/v2/health/live", tags=["open inference protocol"], responses=api.ok(api.LIVE))
    async def live() -> Response:
        """Liveness: 200 while the process answers."""
        return OrjsonResponse({"live": True})

    @app.get(
        "/v2/health/ready",
        tags=["open inference protocol"],
        responses=api.ready_responses(api.READY),
    )
    async def ready() -> Response:
        """Readiness: 200 once the model is loaded; 400 before, and while draining. The body
        names the version served and, in a fleet, whether the metadata store answers."""
        return Response(
            _readiness(service),
            status_code=200 if service.ready else 400,
            media_type="application/json",
        )

    @app.get("/v1/fleet", tags=["mlcd"], responses={**api.ok(api.FLEET), **api.errors(*api.AUTH)})
    async def fleet_view() -> Response:
        """Every replica serving this model (from the shared store): versions, traffic, age."""
        from mlcd.serve.fleet import fleet_view

        if service.fleet is None:
            return OrjsonResponse({"model": service.name, "replicas": [], "fleet": False})
        return OrjsonResponse(await asyncio.to_thread(fleet_view, service.fleet))

    @app.get("/v2/models/{name}", tags=["open inference protocol"], responses=_METADATA)
    async def model_metadata(name: str) -> Response:
        """Model metadata: every input's name, datatype and shape, and the outputs."""
        return _metadata(service, name, None)

    @app.get(
        "/v2/models/{name}/versions/{version}",
        tags=["open inference protocol"],
        responses=_METADATA,
    )
    async def model_version_metadata(name: str, version: str) -> Response:
        """Metadata of one served version."""
        return _metadata(service, name, version)

    @app.get("/v2/models/{name}/ready", tags=["open inference protocol"], responses=_READY)
    async def model_ready(name: str) -> Response:
        """Model readiness: 200 when loaded, else 400."""
        return _model_ready(service, name, None)

    @app.get(
        "/v2/models/{name}/versions/{version}/ready",
        tags=["open inference protocol"],
        responses=_READY,
    )
    async def model_version_ready(name: str, version: str) -> Response:
        """Readiness of one version."""
        return _model_ready(service, name, version)

    @app.post(
        "/v2/models/{name}/infer",
        tags=["open inference protocol"],
        openapi_extra=_INFER_BODY,
        responses=_INFER,
    )
    async def infer(name: str, request: Request) -> Response:
        """Inference with tensors (one per column, or one [rows, columns] tensor)."""
        return await _raw(request, "v2", name, None)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        tags=["open inference protocol"],
        openapi_extra=_INFER_BODY,
        responses=_INFER,
    )
    async def infer_version(name: str, version: str, request: Request) -> Response:
        """Inference on one served version."""
        return await _raw(request, "v2", name, version)


def _not_served(service: PredictionService, name: str) -> Response:
    return OrjsonResponse(
        {"error": f"this server serves model '{service.name}', not '{name}'"}, status_code=404
    )


def _metadata(service: PredictionService, name: str, version: str | None) -> Response:
    if name != service.name:
        return _not_served(service, name)
    served = service.by_version(version)
    if served is None:
        what = f"version {version} of '{name}'" if version else f"model '{name}'"
        status = 404 if version else 400
        return OrjsonResponse({"error": f"{what} is not loaded"}, status_code=status)
    return OrjsonResponse(oip.model_metadata(served, service.versions()))


def _model_ready(service: PredictionService, name: str, version: str | None) -> Response:
    if name != service.name:
        return _not_served(service, name)
    is_ready = service.by_version(version) is not None and not service.draining
    return OrjsonResponse({"name": name, "ready": is_ready}, status_code=200 if is_ready else 400)
