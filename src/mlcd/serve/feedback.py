"""``POST /v1/feedback``: ground-truth labels for earlier request ids.

Feedback is held to the predict path's limits: the body to ``serve.max_body_bytes`` (checked
while reading, by :mod:`mlcd.serve.app`), the labels per request to ``serve.max_rows``. A
refused request stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from mlcd.serve.service import Answer
from mlcd.serve.validation import RequestError, check_content_type, parse_json

if TYPE_CHECKING:
    from mlcd.serve.service import PredictionService

log = logging.getLogger("mlcd.serve")


def _json(status: int, document: dict[str, Any]) -> Answer:
    return Answer(status, orjson.dumps(document), [])


async def store_feedback(
    service: PredictionService, body: bytes, content_type: str | None
) -> Answer:
    """Validate a feedback body and store its labels; the answer says how many were stored."""
    try:
        check_content_type(content_type)
        items = feedback_items(parse_json(body), service.settings.max_rows)
    except RequestError as exc:
        return _json(exc.status, exc.to_dict())
    if service.store is None:
        return _json(503, {"error": "this server has no metadata store to keep feedback in"})
    from mlcd.store import predictions

    store = service.store
    try:
        stored = await asyncio.to_thread(
            store.transact, lambda conn: predictions.add_feedback(conn, items, service.name)
        )
    except Exception as exc:
        log.error("feedback not stored: %s", exc)
        return _json(503, {"error": f"feedback could not be stored: {exc}; retry later"})
    return _json(200, {"stored": stored})


def feedback_items(payload: Any, max_items: int) -> list[dict[str, Any]]:
    """The ``{request_id, label}`` items of a feedback document.

    Raises:
        RequestError: 413 for more than ``max_items`` labels, 422 for a malformed item.
    """
    if isinstance(payload, dict):
        items = payload.get("labels", payload.get("feedback", [payload]))
    else:
        items = payload
    if not isinstance(items, list) or not items:
        raise RequestError(
            422,
            'send {"request_id": "...", "label": ...} or a list of them (or {"labels": [...]})',
        )
    if len(items) > max_items:
        raise RequestError(
            413,
            f"the feedback has {len(items)} labels, more than the limit of {max_items}: "
            "split it into smaller requests (or raise serve.max_rows)",
        )
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestError(422, f"feedback item {i} must be an object", row=i)
        request_id = item.get("request_id")
        if not isinstance(request_id, str) or not request_id or len(request_id) > 64:
            raise RequestError(
                422,
                f"feedback item {i}: 'request_id' must be the id a prediction returned "
                "(a string of at most 64 characters)",
                row=i,
            )
        if "label" not in item:
            raise RequestError(422, f"feedback item {i}: 'label' is missing", row=i)
        out.append({"request_id": request_id, "label": item["label"]})
    return out
