"""``mlcd ui``: the web face of a project, one FastAPI app rendering Jinja2 pages.

Every page calls the query functions the CLI calls (``tracking.query``, ``registry``,
``store.events``, the pipeline's status); this module only turns requests into those calls
and their results into pages. State lives in the URL (filter, order, columns, selected runs),
so every view can be bookmarked. htmx (served from the package) loads further pages of runs
as the table scrolls; plotly.js comes from the installed ``plotly`` package through
``/static/plotly.min.js`` (gzipped, cached for a year). Nothing is fetched from elsewhere.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mlcd.errors import MlcdError, NotFound
from mlcd.serve.auth import Authenticator, Refused, allowed_hosts
from mlcd.ui.security import COOKIE, Access, SecurityHeaders, Viewer, same_origin

PAGE = 50
#: Runs a parallel-coordinates chart shows at most.
PARCOORDS_MAX = 1000
_STATIC = Path(__file__).parent / "static"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class UiContext:
    """The project the UI shows, opened once."""

    root: Path

    @cached_property
    def project(self) -> Any:
        from mlcd.project import Project

        return Project.open(self.root)

    @property
    def store(self) -> Any:
        return self.project.store

    @property
    def objects(self) -> Any:
        return self.project.objects


@lru_cache(maxsize=1)
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=6)


def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("mlcd.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["when"] = _when
    env.filters["number"] = _number
    env.filters["short"] = lambda text: (text or "")[:8]
    env.globals["urlencode"] = urlencode
    return env


def _when(stamp: float | None) -> str:
    return "" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _number(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    return "" if value is None else str(value)


def json_for_script(data: Any) -> Any:
    """JSON to put inside ``<script type="application/json">``: ``<``, ``>`` and ``&``
    escaped as unicode, so a value like ``</script>`` cannot end the element."""
    from markupsafe import Markup

    from mlcd.monitor.report import plain

    text = json.dumps(plain(data), allow_nan=False, default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def safe_filename(path: str) -> str:
    """A download name that is one plain file name (no folders, no control characters)."""
    name = _SAFE_NAME.sub("_", path.rsplit("/", 1)[-1]).strip("._") or "artifact"
    return name[:120]


def create_app(
    root: Path,
    *,
    host: str = "127.0.0.1",
    extra_hosts: tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
) -> Any:
    """The UI's ASGI app for the project at ``root``, as served on ``host``."""
    import os

    from starlette.middleware.trustedhost import TrustedHostMiddleware

    context = UiContext(root)
    templates = _templates()
    environ = os.environ if environ is None else environ
    authenticator = Authenticator(context.store, static=Access.static_tokens(environ))
    access = Access(authenticator, host)
    app = FastAPI(title="mlcd ui", docs_url=None, redoc_url=None, openapi_url=None)

    def page(name: str, viewer: Viewer, status: int = 200, **values: Any) -> HTMLResponse:
        body = templates.get_template(name).render(viewer=viewer, **values)
        return HTMLResponse(body, status_code=status)

    def viewer_of(request: Request) -> Viewer:
        return access.viewer(request.headers, request.cookies)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        if exc.status == 401 and request.method == "GET":
            target = urlencode({"next": str(request.url.path)})
            return RedirectResponse(f"/login?{target}", status_code=303)
        body = templates.get_template("error.html").render(
            viewer=Viewer(None, access.loopback), status=exc.status, message=exc.message
        )
        return HTMLResponse(body, status_code=exc.status)

    @app.exception_handler(MlcdError)
    async def failed(request: Request, exc: MlcdError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 400
        body = templates.get_template("error.html").render(
            viewer=Viewer(None, access.loopback), status=status, message=exc.message,
            hint=exc.hint,
        )  # fmt: skip
        return HTMLResponse(body, status_code=status)

    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next: Any) -> Response:
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request.headers):
            return HTMLResponse(
                "cross-origin request refused: changes come only from this UI's own pages",
                status_code=403,
            )
        response: Response = await call_next(request)
        return response

    # ------------------------------------------------------------ static files
    @app.get("/static/{name}")
    def static(name: str, request: Request) -> Response:
        cache = {"cache-control": "public, max-age=31536000, immutable"}
        if name == "plotly.min.js":
            return Response(
                _plotly_js(),
                media_type="application/javascript",
                headers={**cache, "content-encoding": "gzip", "vary": "accept-encoding"},
            )
        files = {"htmx.min.js": "application/javascript", "ui.js": "application/javascript",
                 "ui.css": "text/css"}  # fmt: skip
        if name not in files:
            return Response("not found", status_code=404)
        return Response((_STATIC / name).read_bytes(), media_type=files[name], headers=cache)

    # ------------------------------------------------------------ sign in
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/runs") -> HTMLResponse:
        return page("login.html", Viewer(None, access.loopback), next=_local(next))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        secret = str(form.get("token") or "")
        target = _local(str(form.get("next") or "/runs"))
        access.viewer({"authorization": f"Bearer {secret}"}, {})
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, secret, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # ------------------------------------------------------------ runs
    @app.get("/")
    def home() -> Response:
        return RedirectResponse("/runs", status_code=307)

    def _runs_query(request: Request) -> dict[str, Any]:
        q = request.query_params
        return {
            "filter": q.get("filter", ""),
            "order": q.get("order", ""),
            "cols": [c for c in q.getlist("col") if c],
            "only_diff": q.get("diff") == "1",
            "group": q.get("group", ""),
        }

    def _search(
        state: dict[str, Any], offset: int, after: tuple[float, str] | None = None
    ) -> tuple[list[Any], str | None, int | None]:
        from mlcd.errors import FilterError
        from mlcd.tracking.query import search

        try:
            with context.store.read() as conn:
                records = search(
                    conn, state["filter"] or None, state["order"] or None, PAGE + 1,
                    0 if after else offset, after=after,
                )  # fmt: skip
        except FilterError as exc:
            return [], exc.message.split(" (at position")[0], exc.position
        return records, None, None

    def _columns(state: dict[str, Any], records: list[Any]) -> list[str]:
        if state["cols"]:
            return list(state["cols"])
        counts: dict[str, int] = {}
        for record in records:
            for key in record.metrics:
                counts[f"metrics.{key}"] = counts.get(f"metrics.{key}", 0) + 1
            for key in record.params:
                counts[f"params.{key}"] = counts.get(f"params.{key}", 0) + 1
        ranked = sorted(counts, key=lambda k: (not k.startswith("metrics."), -counts[k], k))
        return ranked[:8]

    def _cell(record: Any, column: str) -> Any:
        namespace, _, key = column.partition(".")
        source = {"metrics": record.metrics, "params": record.params, "tags": record.tags}
        return source.get(namespace, {}).get(key)

    def _rows(
        state: dict[str, Any], records: list[Any], columns: list[str]
    ) -> list[dict[str, Any]]:
        rows = []
        for record in records:
            cells = [_cell(record, c) for c in columns]
            rows.append({"run": record, "cells": cells})
        return rows

    def _visible(columns: list[str], rows: list[dict[str, Any]], only_diff: bool) -> list[int]:
        if not only_diff or len(rows) < 2:
            return list(range(len(columns)))
        return [i for i in range(len(columns)) if len({repr(r["cells"][i]) for r in rows}) > 1]

    def _runs_context(
        state: dict[str, Any], offset: int, after: tuple[float, str] | None = None
    ) -> dict[str, Any]:
        records, error, position = _search(state, offset, after)
        more = len(records) > PAGE
        records = records[:PAGE]
        columns = _columns(state, records)
        rows = _rows(state, records, columns)
        shown = _visible(columns, rows, state["only_diff"])
        groups: dict[str, list[dict[str, Any]]] = {}
        if state["group"]:
            for row in rows:
                groups.setdefault(str(_cell(row["run"], state["group"])), []).append(row)
        params = [("filter", state["filter"]), ("order", state["order"]),
                  *[("col", c) for c in columns], ("diff", "1" if state["only_diff"] else ""),
                  ("group", state["group"])]  # fmt: skip
        query = urlencode([(k, v) for k, v in params if v])
        sort_links = {}
        for column in columns:
            direction = "asc" if state["order"] == f"{column} desc" else "desc"
            link = [(k, v) for k, v in params if v and k != "order"]
            link.append(("order", f"{column} {direction}"))
            sort_links[column] = "/runs?" + urlencode(link)
        # The next page: a keyset cursor in the default order (as cheap at run 100,000 as at
        # run 50), an offset when sorted by a column.
        if records and not state["order"]:
            last = records[-1]
            next_page = urlencode({"after": f"{last.started_at!r}:{last.id}"})
        else:
            next_page = urlencode({"offset": offset + PAGE})
        return {
            "next_page": next_page,
            "sort_links": sort_links,
            "state": state,
            "columns": columns,
            "shown": shown,
            "rows": rows,
            "groups": groups,
            "error": error,
            "position": position,
            "more": more,
            "next_offset": offset + PAGE,
            "query": query,
        }

    @app.get("/runs", response_class=HTMLResponse)
    def runs_page(request: Request) -> HTMLResponse:
        viewer = viewer_of(request)
        state = _runs_query(request)
        values = _runs_context(state, 0)
        from mlcd.tracking.query import catalogue

        with context.store.read() as conn:
            keys = catalogue(conn)
        return page("runs.html", viewer, catalogue=keys, **values)

    @app.get("/runs/rows", response_class=HTMLResponse)
    def runs_rows(request: Request, offset: int = 0, after: str = "") -> HTMLResponse:
        viewer = viewer_of(request)
        cursor = None
        if after:
            started, _, run_id = after.partition(":")
            try:
                cursor = (float(started), run_id)
            except ValueError:
                return HTMLResponse("'after' is STARTED_AT:RUN_ID", status_code=400)
        values = _runs_context(_runs_query(request), max(0, offset), cursor)
        return page("runs_rows.html", viewer, **values)

    @app.get("/runs/{ref}", response_class=HTMLResponse)
    def run_page(ref: str, request: Request) -> HTMLResponse:
        from mlcd.tracking.compare import downsample, metric_curves
        from mlcd.tracking.lineage import run_lineage
        from mlcd.tracking.query import describe

        viewer = viewer_of(request)
        with context.store.read() as conn:
            info = describe(conn, ref)
            curves = metric_curves(conn, [info["id"]], thin=False)
            lineage = run_lineage(conn, info["id"], depth=2)
        series = {
            key: downsample(per_run[info["id"]]).to_dict()
            for key, per_run in sorted(curves.items())
            if len(per_run.get(info["id"], [])) > 1
        }
        served = _served_versions(info["id"])
        return page("run.html", viewer, run=info, series=series, lineage=lineage, served=served,
                    series_json=json_for_script({"series": series}))  # fmt: skip

    def _served_versions(run_id: str) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from mlcd.store.tables import model_aliases, model_versions

        with context.store.read() as conn:
            rows = conn.execute(
                select(model_versions.c.model, model_versions.c.version).where(
                    model_versions.c.run_id == run_id
                )
            ).all()
            out = []
            for model, version in rows:
                aliases = conn.execute(
                    select(model_aliases.c.alias).where(
                        model_aliases.c.model == model, model_aliases.c.version == version
                    )
                ).scalars()
                out.append({"model": model, "version": version, "aliases": list(aliases)})
        return out

    @app.get("/runs/{ref}/artifacts/{index}")
    def artifact(ref: str, index: int, request: Request) -> Response:
        from mlcd.digest import Digest
        from mlcd.tracking.query import describe

        viewer_of(request)
        with context.store.read() as conn:
            info = describe(conn, ref)
        artifacts = info["artifacts"]
        if not 0 <= index < len(artifacts):
            return Response("no such artifact", status_code=404)
        item = artifacts[index]
        digest = Digest.parse(item["digest"])
        if digest.is_dir:
            return Response("a folder: download its files from the CLI", status_code=400)
        data = context.objects.get_bytes(digest)
        name = safe_filename(item["path"])
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    # ------------------------------------------------------------ compare
    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request) -> HTMLResponse:
        from mlcd.tracking.compare import compare_runs, downsample, metric_curves
        from mlcd.tracking.query import search

        viewer = viewer_of(request)
        refs = [r for r in request.query_params.getlist("run") if r]
        filter_text = request.query_params.get("filter", "")
        with context.store.read() as conn:
            comparison = compare_runs(conn, refs)
            ids = [r.id for r in comparison.runs]
            curves = metric_curves(conn, ids, thin=False)
            population = search(conn, filter_text or None, None, PARCOORDS_MAX + 1)
        capped = len(population) > PARCOORDS_MAX
        population = population[:PARCOORDS_MAX]
        labels = {r.id: (r.name or r.id[:8]) for r in comparison.runs}
        series = {
            key: {labels[run]: downsample(points).to_dict() for run, points in per_run.items()}
            for key, per_run in sorted(curves.items())
            if any(len(points) > 1 for points in per_run.values())  # a curve, not one value
        }
        dims = sorted({k for r in population for k in r.metrics})[:12]
        parcoords = {
            "dims": dims,
            "rows": [[r.metrics.get(k) for k in dims] for r in population],
            "count": len(population),
            "capped": capped,
        }
        return page("compare.html", viewer, comparison=comparison, filter=filter_text,
                    capped=capped, count=len(population),
                    data_json=json_for_script({"curves": series, "parcoords": parcoords}))  # fmt: skip

    # ------------------------------------------------------------ models
    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request) -> HTMLResponse:
        from mlcd.registry import list_models

        viewer = viewer_of(request)
        return page("models.html", viewer, models=list_models(context.store))

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_page(name: str, request: Request, message: str = "") -> HTMLResponse:
        from mlcd.registry import describe, history

        viewer = viewer_of(request)
        info = describe(context.store, name)
        events = history(context.store, name)
        gates = context.project.config.gates
        return page("model.html", viewer, model=info, events=events, gates=gates,
                    message=message)  # fmt: skip

    @app.get("/models/{name}/{version}", response_class=HTMLResponse)
    def version_page(name: str, version: int, request: Request) -> HTMLResponse:
        from mlcd.registry import fetch, history, resolve
        from mlcd.registry.package import ModelPackage

        viewer = viewer_of(request)
        found = resolve(context.store, f"{name}/{version}")
        events = [e for e in history(context.store, name) if e.get("version") == version
                  or e.get("from_version") == version]  # fmt: skip
        project = context.project
        folder = fetch(context.objects, found, project.state_dir / "cache" / "models")
        package = ModelPackage.read(folder, verify=False).to_dict()
        report = next(
            (e for e in events if e.get("report_digest") and
             str(e["kind"]).startswith(("gate.", "alias.", "evaluation."))),
            None,
        )  # fmt: skip
        evaluation = None
        if report is not None:
            from mlcd.digest import Digest

            try:
                evaluation = json.loads(context.objects.get_bytes(Digest.parse(
                    report["report_digest"])))  # fmt: skip
            except (MlcdError, ValueError):
                evaluation = None
        return page("version.html", viewer, version=found.to_dict(), events=events,
                    package=package, evaluation=evaluation, report=report)  # fmt: skip

    @app.get("/reports/{digest}")
    def report(digest: str, request: Request) -> Response:
        from mlcd.digest import Digest

        viewer_of(request)
        data = context.objects.get_bytes(Digest.parse(digest))
        kind = "application/json" if data[:1] in (b"{", b"[") else "text/plain; charset=utf-8"
        return Response(data, media_type=kind)

    @app.post("/models/{name}/alias")
    async def move_alias(name: str, request: Request) -> Response:
        from mlcd.evaluate.promotion import promote

        viewer = access.writer(viewer_of(request))
        form = await request.form()
        alias = str(form.get("alias") or "").strip()
        version = int(str(form.get("version") or "0"))
        reason = str(form.get("reason") or "").strip() or None
        spec = context.project.config.models.get(name)
        result = promote(
            context.store,
            context.objects,
            name,
            version,
            alias,
            gates=context.project.config.gates.get(alias, []),
            data=None if spec is None or spec.eval_data is None else root / spec.eval_data,
            target=None if spec is None else spec.target,
            task=None if spec is None else spec.task,
            slices=None if spec is None else {k: v.model_dump() for k, v in spec.slices.items()},
            reason=reason,
            actor=viewer.actor,
        )
        message = f"{alias} -> {version}: " + (
            "moved" if result.move is not None else "refused by the gates"
        )
        return RedirectResponse(f"/models/{name}?{urlencode({'message': message})}", 303)

    # ------------------------------------------------------------ timeline, pipeline, monitoring
    @app.get("/timeline", response_class=HTMLResponse)
    def timeline_page(request: Request) -> HTMLResponse:
        from mlcd.store import events

        viewer = viewer_of(request)
        kind = request.query_params.get("kind") or None
        model = request.query_params.get("model") or None
        with context.store.read() as conn:
            rows = events.query(conn, model=model, kind=kind, limit=500)
        return page("timeline.html", viewer, events=rows, kind=kind or "", model=model or "")

    @app.get("/pipeline", response_class=HTMLResponse)
    def pipeline_page(request: Request) -> HTMLResponse:
        from mlcd.pipeline.snapshot import load_snapshot
        from mlcd.pipeline.statcache import StatCache
        from mlcd.pipeline.status import pipeline_status

        viewer = viewer_of(request)
        snapshot = load_snapshot(root)
        with StatCache(snapshot.state_dir / "statcache.db") as statcache:
            states = {s.name: s.to_dict() for s in pipeline_status(snapshot, statcache)}
        dag = snapshot.dag.to_dict()
        from mlcd.store.runs import last_stage_runs

        with context.store.read() as conn:
            last = last_stage_runs(conn, [s["name"] for s in dag["stages"]])
        return page("pipeline.html", viewer, dag=dag, states=states, last=last,
                    mermaid=snapshot.dag.to_mermaid())  # fmt: skip

    @app.get("/monitoring", response_class=HTMLResponse)
    def monitoring_page(request: Request) -> HTMLResponse:
        from mlcd.registry import list_models
        from mlcd.store import events

        viewer = viewer_of(request)
        with context.store.read() as conn:
            alerts = events.query(conn, kind="monitor.alert", limit=500)
            passes = events.query(conn, kind="monitor.pass", limit=2000)
            retrains = events.query(conn, kind="retrain.*", limit=200)
        charts: dict[str, dict[str, Any]] = {}
        for event in reversed(passes):  # oldest first
            model = str(event.get("model"))
            details = event.get("details") or {}
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["at"]))
            chart = charts.setdefault(model, {"share": {"x": [], "y": []}, "columns": {}})
            chart["share"]["x"].append(when)
            chart["share"]["y"].append(details.get("share"))
            for column, found in (details.get("columns") or {}).items():
                series = chart["columns"].setdefault(column, {"x": [], "y": []})
                series["x"].append(when)
                series["y"].append(found.get("score"))
        return page("monitoring.html", viewer, models=list_models(context.store),
                    alerts=alerts, passes=passes[:50], retrains=retrains,
                    charts_json=json_for_script(charts), charts=charts)  # fmt: skip

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host, extra_hosts))
    return SecurityHeaders(app)


def _local(target: str) -> str:
    """A redirect target inside this UI (never another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/runs"
