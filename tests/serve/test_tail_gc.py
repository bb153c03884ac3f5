"""A model server freezes its start-up objects, so a full GC collection does not walk them."""

from __future__ import annotations

import asyncio
import gc
from typing import Any


def test_the_server_freezes_start_up_objects_once_the_lifespan_started() -> None:
    from mlcd.serve.server import ServeConfig

    started: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        message = await receive()
        started.append(message["type"])
        assert gc.get_freeze_count() == 0  # not before start-up is complete
        await send({"type": "lifespan.startup.complete"})

    gc.unfreeze()
    try:
        config = ServeConfig(app, port=0, lifespan="on")
        config.load()

        async def receive() -> dict[str, Any]:
            return {"type": "lifespan.startup"}

        sent: list[str] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        asyncio.run(config.loaded_app({"type": "lifespan"}, receive, send))
        assert started == ["lifespan.startup"] and sent == ["lifespan.startup.complete"]
        frozen = gc.get_freeze_count()
        assert frozen > 1000 and frozen >= len(gc.get_objects()) // 2
        late: list[Any] = []
        late.append(late)  # made after start-up: still tracked, collected as usual
        assert any(obj is late for obj in gc.get_objects())
    finally:
        gc.unfreeze()


def test_a_server_embedded_in_a_thread_leaves_the_process_gc_alone() -> None:
    import threading

    from mlcd.serve.server import ServeConfig

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        return None

    gc.unfreeze()
    config = ServeConfig(app, port=0, lifespan="on")
    config.load()
    thread = threading.Thread(
        target=lambda: asyncio.run(config.loaded_app({"type": "lifespan"}, receive, send))
    )
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert gc.get_freeze_count() == 0
