"""The prediction service: limits, routing between versions, predicting, logging, metrics.

Framework-free on purpose: :mod:`mlcd.serve.app` hands it raw bodies from a thin ASGI fast
path, so a single-row request pays for JSON parsing, the signature check, one model call and
an ``orjson`` dump, and nothing else. Bad input of any kind comes back as a 4xx with a
message naming what is wrong; only a model that raises on valid input gives a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from mlcd.serve import oip
from mlcd.serve.holder import ModelHolder, Served
from mlcd.serve.issued import IssuedIds
from mlcd.serve.predlog import LogEntry, PredictionLog
from mlcd.serve.ratelimit import RateLimiter
from mlcd.serve.traffic import CanaryGuard, CanarySpec, Router, Verdict
from mlcd.serve.validation import Inputs, RequestError, check_content_type, parse_json

if TYPE_CHECKING:
    from mlcd.config import Serve
    from mlcd.serve.fleet import FleetMember
    from mlcd.serve.metrics import ServeMetrics
    from mlcd.store import Store

log = logging.getLogger("mlcd.serve")

#: Requests with at most this many rows are predicted on the event loop (a thread hop costs
#: more than the prediction); bigger ones go to a thread so the timeout can answer 504.
INLINE_ROWS = 64
#: Bodies up to this size are parsed on the event loop; bigger ones are parsed in the scoring
#: threads, so the loop stays free for health probes and small requests.
INLINE_BYTES = 64 * 1024
#: Scoring threads per worker. Parsing and validating are bound by the GIL, so more threads
#: add no throughput and take the event loop's share of the GIL (health probes, admission);
#: scale with ``--workers``. Measured: 300 concurrent 5,000-row requests, one thread: the 503s
#: came back in a median 2.5 s and no readiness probe timed out; four threads: 7 s and 1 of 3.
SCORE_THREADS = 1
JSON = b"application/json"
CONCURRENCY_LIMIT = (
    "the server is at its concurrency limit (serve.max_concurrency requests): retry shortly"
)


@dataclass
class Answer:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


class PredictionService:
    """Everything behind the predict and infer endpoints of one served model."""

    def __init__(
        self,
        *,
        name: str,
        primary: ModelHolder,
        settings: Serve,
        metrics: ServeMetrics,
        predlog: PredictionLog | None = None,
        store: Store | None = None,
        canary: ModelHolder | None = None,
        canary_spec: CanarySpec | None = None,
        shadow: ModelHolder | None = None,
        guard: CanaryGuard | None = None,
    ) -> None:
        self.name = name
        self.primary = primary
        self.canary = canary
        self.canary_spec = canary_spec
        self.shadow = shadow
        self.settings = settings
        self.metrics = metrics
        self.predlog = predlog
        self.store = store
        self.router = Router(canary_spec.percent if canary_spec else 0.0)
        self.guard = guard or CanaryGuard()
        self.canary_disabled: str | None = None
        self.fleet: FleetMember | None = None  # set by the app when a store is shared
        self.answered = 0  # requests answered (200) and failed by the model (5xx): the
        self.failed = 0  # fleet heartbeat reports them
        self.in_flight = 0
        self.reading = 0  # requests whose body is being received (they count as in flight)
        self.rows_in_flight = 0
        self.draining = False
        # Heavy requests are parsed and scored here, never on the event loop and never in the
        # default executor that store writes share.
        self._pool = ThreadPoolExecutor(SCORE_THREADS, thread_name_prefix="mlcd-score")
        self._prefix = uuid.uuid4().hex[:12] + "-"
        self._counter = 0
        self._background: set[asyncio.Future[Any]] = set()
        self.issued = IssuedIds()
        self.feedback_limiter = RateLimiter(settings.feedback_rate_per_s)

    # ------------------------------------------------------------------ state
    @property
    def holders(self) -> list[ModelHolder]:
        """Every holder this service follows."""
        return [h for h in (self.primary, self.canary, self.shadow) if h is not None]

    @property
    def ready(self) -> bool:
        """Ready for traffic: the primary is loaded and the server is not draining."""
        return self.primary.ready and not self.draining

    def close(self) -> None:
        """Stop the scoring threads (running predictions finish first)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def by_version(self, version: str | None) -> Served | None:
        """The served version with that number (primary or canary), or the primary."""
        if version is None:
            return self.primary.current
        for holder in (self.primary, self.canary):
            if holder is not None and holder.current and str(holder.current.version) == version:
                return holder.current
        return None

    def versions(self) -> list[str]:
        """Versions that answer requests now."""
        return [
            str(h.current.version)
            for h in (self.primary, self.canary)
            if h is not None and h.current is not None
        ]

    # ------------------------------------------------------------------ entry point
    async def handle(
        self,
        endpoint: str,
        model: str,
        version: str | None,
        body: bytes,
        headers: Mapping[bytes, bytes],
    ) -> Answer:
        """Answer one predict (``v1``) or infer (``v2``) request."""
        started = time.perf_counter()
        if self.in_flight >= self.settings.max_concurrency:
            return self.refuse(endpoint, 503, CONCURRENCY_LIMIT, started)
        self.in_flight += 1
        self.metrics.in_flight.inc()
        release = True
        try:
            answer, release = await self._handle(endpoint, model, version, body, headers, started)
            return answer
        finally:
            if release:
                self._release()

    def _release(self, _future: Any = None) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()

    async def _handle(
        self,
        endpoint: str,
        model: str,
        version: str | None,
        body: bytes,
        headers: Mapping[bytes, bytes],
        started: float,
    ) -> tuple[Answer, bool]:
        if model != self.name:
            return self.refuse(
                endpoint, 404, f"this server serves model '{self.name}', not '{model}'", started
            ), True
        arm = "primary"
        if version is not None:
            served = self.by_version(version)
            if served is None:
                return self.refuse(
                    endpoint,
                    404,
                    f"model '{model}' version {version} is not served here "
                    f"(serving: {', '.join(self.versions()) or 'none yet'})",
                    started,
                ), True
        else:
            served = self.primary.current
            if self.canary is not None and self.canary.current is not None:
                key = headers.get(b"x-canary-key")
                if self.router.to_canary(key.decode("latin-1") if key else None):
                    served, arm = self.canary.current, "canary"
        if served is None:
            return self.refuse(
                endpoint, 503, f"model '{model}' is not loaded yet: retry shortly", started
            ), True
        try:
            content_type = headers.get(b"content-type")
            check_content_type(content_type.decode("latin-1") if content_type else None)
            if len(body) <= INLINE_BYTES:
                payload, inputs, oip_id, outputs = _parse(endpoint, served, body)
            else:
                loop = asyncio.get_running_loop()
                parsed = loop.run_in_executor(self._pool, _parse, endpoint, served, body)
                payload, inputs, oip_id, outputs = await parsed
        except RequestError as exc:
            return self._rejected(endpoint, served, exc, started, headers), True
        rows = inputs.rows
        if self.rows_in_flight and self.rows_in_flight + rows > self.settings.max_rows_in_flight:
            message = (
                f"the server is at its limit of {self.settings.max_rows_in_flight} rows in "
                f"flight ({self.rows_in_flight} now, {rows} in this request): retry shortly "
                "(or raise serve.max_rows_in_flight)"
            )
            return self.refuse(endpoint, 503, message, started), True
        self.rows_in_flight += rows
        release = True
        try:
            answer, release = await self._score(
                endpoint, served, arm, payload, inputs, oip_id, outputs, headers, started
            )
        finally:
            if release:  # else the rows are given back when the timed-out thread finishes
                self.rows_in_flight -= rows
        return answer, release

    async def _score(
        self,
        endpoint: str,
        served: Served,
        arm: str,
        payload: Any,
        inputs: Inputs,
        oip_id: Any,
        outputs: Any,
        headers: Mapping[bytes, bytes],
        started: float,
    ) -> tuple[Answer, bool]:
        ids = self._ids(inputs.rows, headers.get(b"x-request-id"))
        release = True
        try:
            if inputs.rows <= INLINE_ROWS:
                predictions, proba = served.predict(inputs)
            else:
                predictions, proba, release = await self._predict_in_thread(served, inputs, started)
        except RequestError as exc:  # a value the signature check let through (int columns)
            return self._rejected(endpoint, served, exc, started, headers), release
        except TimeoutError:
            message = (
                f"the prediction took longer than the {self.settings.timeout_s:g} s timeout: "
                "send fewer rows per request (or raise serve.timeout_s)"
            )
            failed = (ids, inputs)
            return self._error(endpoint, served, 504, message, started, arm, failed), False
        except Exception as exc:
            log.exception("%s/%s failed to predict", served.name, served.version)
            message = f"model {served.name}/{served.version} failed to predict: {exc}"
            failed = (ids, inputs)
            return self._error(endpoint, served, 500, message, started, arm, failed), release
        if endpoint == "v2":
            document = oip.response(served, predictions, proba, ids, oip_id, outputs)
        else:
            document = {
                "model": served.name,
                "version": served.version,
                "role": arm,
                "request_ids": ids,
                "predictions": predictions.tolist(),
            }
            if proba is not None:
                document["probabilities"] = proba.tolist()
                document["classes"] = served.classes
        answer = Answer(200, orjson.dumps(document), self._version_headers(served, arm))
        elapsed = time.perf_counter() - started
        self.metrics.observe(served.version, endpoint, 200, elapsed)
        self.answered += 1
        self.metrics.predicted(served.version, inputs.rows)
        self._log(served, "ok", ids, elapsed, inputs, predictions, proba)
        if self.canary is not None and self.router.percent > 0:
            self._guard(arm, elapsed, False)
        if self.shadow is not None and self.shadow.current is not None:
            asyncio.get_running_loop().call_soon(self._shadow, payload, endpoint, ids)
        return answer, release

    async def _predict_in_thread(
        self, served: Served, inputs: Inputs, started: float
    ) -> tuple[Any, Any, bool]:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, served.predict, inputs)
        left = self.settings.timeout_s - (time.perf_counter() - started)
        try:
            predictions, proba = await asyncio.wait_for(asyncio.shield(future), max(left, 0.0))
        except TimeoutError:
            # The thread cannot be stopped: its slot and rows are given back when it
            # finishes, so the limits keep counting the work that is really running.
            rows = inputs.rows

            def given_back(_future: Any) -> None:
                self.rows_in_flight -= rows
                self._release()

            future.add_done_callback(given_back)
            raise
        return predictions, proba, True

    # ------------------------------------------------------------------ outcomes
    def _version_headers(self, served: Served, arm: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-model-name", served.name.encode()),
            (b"x-model-version", str(served.version).encode()),
            (b"x-model-role", arm.encode()),
        ]

    def refuse(self, endpoint: str, status: int, message: str, started: float) -> Answer:
        self.metrics.observe(None, endpoint, status, time.perf_counter() - started)
        headers = [(b"retry-after", b"1")] if status == 503 else []
        return Answer(status, orjson.dumps({"error": message, "status": status}), headers)

    def _rejected(
        self,
        endpoint: str,
        served: Served,
        exc: RequestError,
        started: float,
        headers: Mapping[bytes, bytes],
    ) -> Answer:
        elapsed = time.perf_counter() - started
        self.metrics.observe(served.version, endpoint, exc.status, elapsed)
        ids = self._ids(1, headers.get(b"x-request-id"))
        self._log(served, "rejected", ids, elapsed, None, None, None, error=exc.message)
        body = exc.to_dict() if endpoint == "v1" else {"error": exc.message}
        return Answer(exc.status, orjson.dumps(body), self._version_headers(served, "primary"))

    def _error(
        self,
        endpoint: str,
        served: Served,
        status: int,
        message: str,
        started: float,
        arm: str,
        failed: tuple[list[str], Inputs],
    ) -> Answer:
        elapsed = time.perf_counter() - started
        self.metrics.observe(served.version, endpoint, status, elapsed)
        self.failed += 1
        # Valid inputs the model could not answer: logged (status error) for whoever debugs it.
        ids, inputs = failed
        self._log(served, "error", ids, elapsed, inputs, None, None, error=message)
        if self.canary is not None and self.router.percent > 0:
            self._guard(arm, elapsed, True)
        body = {"error": message, "status": status} if endpoint == "v1" else {"error": message}
        return Answer(status, orjson.dumps(body), self._version_headers(served, arm))

    def _ids(self, rows: int, given: bytes | None) -> list[str]:
        if given:
            base = given.decode("latin-1")[:64]
            return [base] if rows == 1 else [f"{base}-{i}" for i in range(rows)]
        start = self._counter
        self._counter += rows
        prefix = self._prefix
        return [f"{prefix}{n:x}" for n in range(start, start + rows)]

    def _log(
        self,
        served: Served,
        status: str,
        ids: list[str],
        elapsed: float,
        inputs: Inputs | None,
        predictions: Any,
        proba: Any,
        error: str | None = None,
    ) -> None:
        if status == "ok":  # only answered ids may receive feedback
            self.issued.add(ids, served.version)
        if self.predlog is None:
            return
        positive = proba[:, 1] if proba is not None and proba.shape[1] == 2 else None
        self.predlog.log(
            LogEntry(
                model=served.name,
                version=served.version,
                ts=time.time(),
                latency_ms=elapsed * 1000,
                status=status,
                request_ids=ids,
                # Rejected rows keep the feature columns (null) so every segment of a version
                # has the same schema; with a matrix, the log reads only the column order.
                features=(
                    inputs.column_values()
                    if inputs is not None and inputs.matrix is None
                    else served.plan.no_values
                ),
                predictions=predictions,
                proba=positive,
                error=error,
                matrix=inputs.matrix if inputs is not None else None,
            )
        )

    # ------------------------------------------------------------------ canary and shadow
    def _guard(self, arm: str, elapsed: float, error: bool) -> None:
        verdict = self.guard.record(arm, elapsed, error)
        if verdict is not None:
            self._switch_off_canary(verdict)

    def canary_switched_off(self, reason: str) -> None:
        """Stop sending requests to the canary (its holder keeps following the alias)."""
        if self.canary_disabled is not None:
            return
        self.router.percent = 0.0
        self.canary_disabled = reason
        self.metrics.canary_disabled.inc()
        canary = self.canary.current if self.canary is not None else None
        log.warning(
            "canary %s/%s switched off: %s",
            self.name,
            canary.version if canary else None,
            reason,
        )

    def _switch_off_canary(self, verdict: Verdict) -> None:
        """A verdict of the local guard (no store: this process decides alone)."""
        assert self.canary is not None and self.canary_spec is not None
        self.canary_switched_off(verdict.reason)
        version = self.canary.current.version if self.canary.current else None
        if self.store is None:
            return
        store = self.store
        alias = self.canary_spec.alias

        def record() -> None:
            from mlcd.store import events

            store.transact(
                lambda conn: events.record(
                    conn,
                    "serve.canary_disabled",
                    model=self.name,
                    version=version,
                    alias=alias,
                    reason=verdict.reason,
                    details={"canary": verdict.canary, "primary": verdict.primary},
                )
            )

        future = asyncio.get_running_loop().run_in_executor(None, record)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    def _shadow(self, payload: Any, endpoint: str, ids: list[str]) -> None:
        holder = self.shadow
        served = holder.current if holder is not None else None
        if served is None:
            return
        started = time.perf_counter()
        try:
            if endpoint == "v2":
                inputs = oip.parse_request(payload, served)[0]
            else:
                inputs = served.plan.parse(payload)
            predictions, proba = served.predict(inputs)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            self._log(served, "shadow", ids, elapsed, None, None, None, error=str(exc))
            return
        elapsed = time.perf_counter() - started
        self.metrics.predicted(served.version, inputs.rows)
        self._log(served, "shadow", ids, elapsed, inputs, predictions, proba)


def _parse(endpoint: str, served: Served, body: bytes) -> tuple[Any, Inputs, Any, Any]:
    """The JSON payload, the validated inputs, and the v2 request id and outputs."""
    payload = parse_json(body)
    if endpoint == "v2":
        inputs, oip_id, outputs = oip.parse_request(payload, served)
        return payload, inputs, oip_id, outputs
    return payload, served.plan.parse(payload), None, None
