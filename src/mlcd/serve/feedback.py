"""``POST /v1/feedback``: ground-truth labels for earlier request ids.

Labels drive live performance and the decay trigger (which can start a retrain), so they are
accepted only when they can be trusted:

* from a ``feedback`` token (checked by :mod:`mlcd.serve.auth`), at most
  ``serve.feedback_rate_per_s`` requests per second per token (429 with ``Retry-After``);
* for request ids this server answered for this model (404 naming the unknown ids otherwise;
  shadow and rejected requests do not count, see :mod:`mlcd.serve.issued`);
* with a value the model can have produced: one of its classes, or a finite number for a
  regressor (422 naming the item);
* once per id: a second label is a 409 unless the item says ``"replace": true``, and then the
  replacement is an audit event (``feedback.replaced``, with the token's name as actor).

Feedback is held to the predict path's limits: the body to ``serve.max_body_bytes`` (checked
while reading, by :mod:`mlcd.serve.app`), the labels per request to ``serve.max_rows``. A
refused request stores nothing: every item is checked before any is stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

import orjson

from mlcd.serve.service import Answer
from mlcd.serve.validation import RequestError, check_content_type, parse_json

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from mlcd.serve.service import PredictionService

log = logging.getLogger("mlcd.serve")


def _json(status: int, document: dict[str, Any]) -> Answer:
    return Answer(status, orjson.dumps(document), [])


async def store_feedback(
    service: PredictionService,
    body: bytes,
    content_type: str | None,
    actor: str | None = None,
) -> Answer:
    """Check a feedback body and store its labels; the answer says how many were stored and
    how many replaced an earlier label."""
    try:
        check_content_type(content_type)
        items = feedback_items(parse_json(body), service.settings.max_rows)
    except RequestError as exc:
        return _json(exc.status, exc.to_dict())
    if service.store is None:
        return _json(503, {"error": "this server has no metadata store to keep feedback in",
                           "status": 503})  # fmt: skip
    wait = service.feedback_limiter.take(actor or "")
    if wait > 0:
        answer = _json(429, {
            "error": f"too many feedback requests from '{actor or 'this client'}': at most "
            f"{service.settings.feedback_rate_per_s:g} per second; retry in {wait:.1f} s",
            "status": 429,
        })  # fmt: skip
        answer.headers.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
        return answer
    store = service.store
    ids = [item["request_id"] for item in items]
    root = service.predlog.root if service.predlog is not None else None
    try:
        issued = await asyncio.to_thread(service.issued.resolve, ids, service.name, store, root)
    except Exception as exc:
        log.error("feedback: request ids could not be checked: %s", exc)
        return _json(503, {"error": f"request ids could not be checked: {exc}; retry later",
                           "status": 503})  # fmt: skip
    unknown = [i for i in dict.fromkeys(ids) if i not in issued]
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        return _json(404, {
            "error": f"{len(unknown)} of {len(ids)} request ids were never answered by this "
            f"server for model '{service.name}' ({shown}); nothing was stored. Send the "
            "request_ids a prediction returned (one answered in the last second may not be "
            "written yet: retry it)",
            "status": 404,
            "unknown": unknown[:100],
        })  # fmt: skip
    try:
        for row, item in enumerate(items):
            check_label(service, item["label"], row)
    except RequestError as exc:
        return _json(exc.status, exc.to_dict())
    from mlcd.store import events, predictions

    def work(conn: Connection) -> tuple[int, list[str], list[str]]:
        existing = predictions.feedback_for(conn, ids)
        clash = [i["request_id"] for i in items if i["request_id"] in existing and not i["replace"]]
        if clash:
            return 0, [], clash
        stored = predictions.add_feedback(conn, items, service.name)
        replaced = [i["request_id"] for i in items if i["request_id"] in existing]
        for item in items:
            if item["request_id"] in existing:
                events.record(
                    conn,
                    "feedback.replaced",
                    model=service.name,
                    version=issued.get(item["request_id"]),
                    actor=actor or "unauthenticated",
                    reason=f"label of {item['request_id']} replaced",
                    details={
                        "request_id": item["request_id"],
                        "previous": existing[item["request_id"]],
                        "label": item["label"],
                    },
                )
        return stored, replaced, []

    try:
        stored, replaced, clash = await asyncio.to_thread(store.transact, work)
    except Exception as exc:
        log.error("feedback not stored: %s", exc)
        return _json(503, {"error": f"feedback could not be stored: {exc}; retry later",
                           "status": 503})  # fmt: skip
    if clash:
        shown = ", ".join(repr(i) for i in clash[:5]) + (" ..." if len(clash) > 5 else "")
        return _json(409, {
            "error": f"{len(clash)} request ids already have a label ({shown}); nothing was "
            'stored. Send the item with "replace": true to replace a label (it is audited)',
            "status": 409,
            "conflicts": clash[:100],
        })  # fmt: skip
    return _json(200, {"stored": stored, "replaced": len(replaced)})


def check_label(service: PredictionService, label: Any, row: int) -> None:
    """A label the model could have predicted: one of its classes, or a finite number.

    Raises:
        RequestError: 422 naming the item.
    """
    served = service.primary.current
    classes = served.classes if served is not None else None
    if classes is not None:
        if isinstance(label, bool | int | float | str) and _in_classes(label, classes):
            return
        shown = ", ".join(repr(c) for c in classes[:20])
        raise RequestError(
            422,
            f"feedback item {row}: label {label!r} is not a class of model "
            f"'{service.name}' ({shown})",
            row=row,
        )
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
        raise RequestError(
            422,
            f"feedback item {row}: label {label!r} must be a finite number "
            f"(model '{service.name}' is a regressor)",
            row=row,
        )


def _in_classes(label: Any, classes: list[Any]) -> bool:
    """Class labels come from numpy (0, 1, 'yes'); JSON gives 0, 1.0, "yes", true."""
    for known in classes:
        if isinstance(known, str) or isinstance(label, str):
            if str(known) == str(label):
                return True
        elif label == known:
            return True
    return False


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
        replace = item.get("replace", False)
        if not isinstance(replace, bool):
            raise RequestError(422, f"feedback item {i}: 'replace' must be true or false", row=i)
        out.append({"request_id": request_id, "label": item["label"], "replace": replace})
    if len({item["request_id"] for item in out}) < len(out):
        # Two labels for one id conflict with each other, as a second label for a stored one
        # does (409); neither is stored.
        raise RequestError(409, "the feedback names a request id twice: send one label per id")
    return out
