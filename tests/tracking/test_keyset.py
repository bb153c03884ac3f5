"""``search(after=...)``: keyset pages of the default order cover every run once, even when
many runs share a start time (a bulk import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.errors import UsageError
from mlcd.store import Store, runs
from mlcd.tracking.query import search


def test_keyset_pages_cover_every_run_once_with_equal_start_times(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'mlcd.db'}")
    try:
        def work(conn: object) -> None:
            for i in range(57):
                run_id = runs.create_run(conn, name=f"r{i}", started_at=1000.0 + i // 10)  # type: ignore[arg-type]
                runs.end_run(conn, run_id, "finished")  # type: ignore[arg-type]

        store.transact(work)
        with store.read() as conn:
            everything = [r.id for r in search(conn, None, None, None, with_data=False)]
            pages, after = [], None
            while True:
                page = search(conn, None, None, 10, after=after, with_data=False)
                if not page:
                    break
                pages.extend(r.id for r in page)
                after = (page[-1].started_at, page[-1].id)
            assert pages == everything and len(set(pages)) == 57
            with pytest.raises(UsageError, match="default order"):
                search(conn, None, "metrics.x desc", 10, after=(1.0, "x"))
    finally:
        store.dispose()
