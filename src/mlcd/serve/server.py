"""uvicorn, configured for a model server that faces hostile clients.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no deadline for
the request headers themselves: a client that sends one header byte a second (slowloris)
keeps its connection, and a thousand of them keep a thousand. :func:`uvicorn_config` swaps
in uvicorn's httptools protocol extended to close a connection whose request headers are not complete
``serve.header_timeout_s`` after its first byte (or after the connection opened). The
deadline is a timer on the event loop per connection, armed while headers are awaited.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlcd.config import Serve

log = logging.getLogger("mlcd.serve")

#: How long an idle keep-alive connection stays open between requests.
KEEP_ALIVE_S = 5


class ServeConfig(uvicorn.Config):
    """uvicorn's config plus the header deadline (a module-level class: it is pickled for
    worker processes)."""

    def __init__(self, app: Any, *, header_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s

    def load(self) -> None:
        """Build the app (in each worker process); :func:`freeze_startup_objects` once its
        start-up (the lifespan: the prediction log's imports, the first model load) is done."""
        super().load()
        self.loaded_app = _FreezeAfterStartup(self.loaded_app)


class _FreezeAfterStartup:
    """An ASGI wrapper that freezes the GC's view of start-up objects when the app's lifespan
    startup completes (uvicorn then starts accepting connections), in a server that owns its
    process."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]

        async def sent(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete" and _owns_the_process():
                freeze_startup_objects()
            await send(message)

        return await self.app(scope, receive, sent)  # type: ignore[no-any-return]


def _owns_the_process() -> bool:
    """A server on the main thread owns its process (``mlcd serve``, a worker); one embedded
    in another program's thread (tests, notebooks) leaves that program's GC alone."""
    import threading

    return threading.current_thread() is threading.main_thread()


def freeze_startup_objects() -> None:
    """Move every object alive after start-up out of the cyclic GC's reach (``gc.freeze``).

    A worker holds ~230k objects once fastapi, numpy, scikit-learn and pyarrow are imported;
    a full collection walks them all, on whichever thread triggers it (measured: 140-370 ms
    of CPU per full collection on this machine, a stall of the event loop each time, the
    worst of the serving tail). Frozen, a full collection walks only what the server created
    since (34k objects when measured; no full collection in the same 10 s window).
    """
    import gc

    gc.collect()
    gc.freeze()


class _HeaderDeadline:
    """Mixed into a uvicorn HTTP protocol: close the connection when the headers of a request
    take longer than ``config.header_timeout_s`` to arrive."""

    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _deadline: asyncio.TimerHandle | None = None
    _cycle_seen: Any = None

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]
        self._header_timeout_s = float(getattr(config, "header_timeout_s", 10.0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        cycle = self.cycle
        if cycle is not None and cycle is not self._cycle_seen:
            self._cycle_seen = cycle  # a request's headers are complete
            self._disarm()
        if self._awaiting_headers() and data:
            self._arm()  # the first bytes of the next request on a keep-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _awaiting_headers(self) -> bool:
        cycle = self.cycle
        return cycle is None or (cycle is self._cycle_seen and cycle.response_complete)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._awaiting_headers() and not self.transport.is_closing():
            log.debug("closing a connection whose request headers took too long")
            self.transport.close()


class HttpToolsHeaderDeadline(_HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (the one mlcd serves with) with a request-header deadline."""


def uvicorn_config(app: Any, settings: Serve, **kwargs: Any) -> ServeConfig:
    """A uvicorn config for ``app`` (an app or an import string) with mlcd's connection limits.

    Args:
        app: the ASGI app, or ``"module:attr"`` with ``factory=True`` in ``kwargs``.
        settings: ``serve:`` of ``mlcd.yaml`` (host, port, workers, ``header_timeout_s``).
        kwargs: further :class:`uvicorn.Config` options (log level, loop, ...).
    """
    if settings.workers > 1:
        from mlcd.serve.metrics import sweep_stale_folders

        for folder in sweep_stale_folders():
            log.info("removed %s, the metrics folder of a server that was killed", folder)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "http": HttpToolsHeaderDeadline,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "access_log": False,
        "server_header": False,
        **kwargs,
    }
    return ServeConfig(app, header_timeout_s=settings.header_timeout_s, **options)
