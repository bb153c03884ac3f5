"""A model server freezes its start-up objects, so a full GC collection does not walk them."""

from __future__ import annotations

import gc
from typing import Any


async def _app(scope: Any, receive: Any, send: Any) -> None:  # a bare ASGI app
    return None


def test_loading_the_server_config_freezes_start_up_objects() -> None:
    from mlcd.serve.server import ServeConfig

    gc.unfreeze()
    try:
        ServeConfig(_app, port=0).load()
        frozen = gc.get_freeze_count()
        # Everything alive at load (this test process's modules, at least) is frozen...
        assert frozen > 1000
        assert frozen >= len(gc.get_objects()) // 2
        # ...and what comes later is still tracked and collected as usual.
        late: list[Any] = []
        late.append(late)  # a cycle
        assert any(obj is late for obj in gc.get_objects())
    finally:
        gc.unfreeze()
