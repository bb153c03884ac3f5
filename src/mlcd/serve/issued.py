"""Which request ids this server answered: feedback is accepted only for those.

Recent ids live in memory (a bounded, insertion-ordered map: id -> version), filled as
answers go out, before the prediction log's writer has put them on disk. An id not in memory
is looked up in the prediction log's segments of the model (rows answered ``ok``; shadow
and rejected rows do not count): first the segments written since the last look, which are
added to memory, then — only if memory ever evicted ids — every segment, read for those ids
alone. An id found nowhere was never issued for this model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcd.store import Store


class IssuedIds:
    """The request ids a server answered, newest ``capacity`` in memory."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, int | None] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = False
        self._last_segment = 0

    def add(self, ids: Sequence[str], version: int | None) -> None:
        """Remember answered ids (the hot path: a dict insert per id)."""
        with self._lock:
            store = self._ids
            for request_id in ids:
                store[request_id] = version
            while len(store) > self.capacity:
                store.popitem(last=False)
                self.evicted = True

    def __len__(self) -> int:
        return len(self._ids)

    def known(self, ids: Iterable[str]) -> dict[str, int | None]:
        """``{id: version}`` for those of ``ids`` in memory."""
        with self._lock:
            return {i: self._ids[i] for i in ids if i in self._ids}

    def resolve(
        self, ids: Sequence[str], model: str, store: Store | None, root: Path | None
    ) -> dict[str, int | None]:
        """``{id: version}`` for every id of ``ids`` this server issued for ``model``: memory
        first, then the prediction log's segments (blocking: call it off the event loop)."""
        found = self.known(ids)
        missing = [i for i in ids if i not in found]
        if not missing or store is None or root is None:
            return found
        from mlcd.store import predictions

        with store.read() as conn:
            fresh = predictions.segments(conn, model, after_id=self._last_segment)
        if fresh:
            for segment in fresh:
                for request_id, version in _ok_rows(root, segment):
                    self.add([request_id], version)
            self._last_segment = max(self._last_segment, max(int(s["id"]) for s in fresh))
            found.update(self.known(missing))
            missing = [i for i in ids if i not in found]
        if missing and self.evicted:
            with store.read() as conn:
                everything = predictions.segments(conn, model)
            wanted = set(missing)
            for segment in everything:
                for request_id, version in _ok_rows(root, segment, wanted):
                    found[request_id] = version
        return found


def _ok_rows(
    root: Path, segment: dict[str, Any], only: set[str] | None = None
) -> list[tuple[str, int | None]]:
    """``(request_id, version)`` of a segment's rows answered ``ok`` (of ``only`` if given);
    a segment that cannot be read contributes nothing."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mlcd.errors import MlcdError
    from mlcd.logdata.segments import locate

    try:  # a relative path under the project, or a URL (a fleet's log on S3)
        where = locate(root, str(segment["path"]))
        table = pq.read_table(where.path, columns=["request_id", "status"], filesystem=where.fs)
    except (OSError, ValueError, MlcdError):
        return []
    mask = pc.equal(table["status"], "ok")
    if only is not None:
        import pyarrow as pa

        mask = pc.and_(mask, pc.is_in(table["request_id"], pa.array(sorted(only), pa.string())))
    ids = table.filter(mask)["request_id"].to_pylist()
    version = segment.get("version")
    return [(str(i), None if version is None else int(version)) for i in ids]
