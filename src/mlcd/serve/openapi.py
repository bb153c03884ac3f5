"""What ``mlcd serve``'s OpenAPI document says each route answers: every status, every body.

The hot routes read their body raw (see ``FastPath``), so their request and response schemas
are declared here as JSON Schema rather than inferred from pydantic models. Every error any
route can return has the same body: ``{"error": message}`` plus, on mlcd's own routes,
``"status"`` and, for a value that does not fit the signature, ``"column"`` / ``"row"``.
Checked by ``tests/serve/test_openapi_contract.py``: schemathesis with every check against a
live server.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong and how to fix it."},
        "status": {"type": "integer"},
        "column": {"type": "string"},
        "row": {"type": "integer"},
    },
}

_WHY = {
    400: "Malformed: not JSON, an unknown body shape, or (readiness) not ready.",
    401: "No valid bearer token where one is needed (see WWW-Authenticate).",
    403: "The token's role does not allow this route.",
    404: "Not served here: another model name, an unknown version, or unknown request ids.",
    409: 'A label exists for that request id (send it with "replace": true), or the body names an id twice.',
    413: "The body or the number of rows is over the server's limit.",
    415: "The content type is not JSON.",
    422: "The values do not fit the model's signature (the message names column and row).",
    429: "Too many feedback requests for this token: retry after Retry-After seconds.",
    500: "The model raised on valid input (logged with the request).",
    503: "Not loaded yet, draining, or too many requests in flight: retry after Retry-After.",
    504: "The model took longer than the server's timeout.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Response declarations for ``statuses``, each with the error body."""
    return {
        status: {
            "description": _WHY[status],
            "content": {"application/json": {"schema": ERROR}},
        }
        for status in statuses
    }


def ok(schema: dict[str, Any], description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


_ROWS = {"type": "array", "items": {"type": "object"}}
_COLUMNS = {
    "type": "object",
    "required": ["columns", "data"],
    "properties": {
        "columns": {"type": "array", "items": {"type": "string"}},
        "data": {"type": "array", "items": {"type": "array"}},
    },
}
PREDICT_REQUEST = {
    "description": 'Rows as [{column: value}, ...], {"columns": [...], "data": [[...]]}, or '
    "MLflow's dataframe_split, dataframe_records, instances or inputs shapes. The columns are "
    "those of the served version's signature (GET /v1/models/{name}).",
    "anyOf": [
        _ROWS,
        _COLUMNS,
        {
            "type": "object",
            "minProperties": 1,
            "properties": {
                "dataframe_split": _COLUMNS,
                "dataframe_records": _ROWS,
                "instances": {"type": "array"},
                "inputs": {"type": ["array", "object"]},
            },
        },
    ],
}
PREDICT_RESPONSE = {
    "type": "object",
    "required": ["model", "version", "predictions", "request_ids"],
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "role": {"type": "string", "enum": ["primary", "canary"]},
        "request_ids": {"type": "array", "items": {"type": "string"}},
        "predictions": {"type": "array"},
        "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "classes": {"type": "array"},
    },
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
INFER_REQUEST = {
    "description": "An Open Inference Protocol v2 inference request: one tensor per column of "
    "the signature, or one [rows, columns] tensor; each tensor's data must hold as many values "
    "as its shape says (which JSON Schema cannot express: a mismatch is a 422).",
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
        },
    },
}
INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {"type": "array", "items": _TENSOR},
    },
}


def feedback_request(label: dict[str, Any] | None = None) -> dict[str, Any]:
    """The feedback body; ``label`` narrows the label to what the served version can predict."""
    item = {
        "type": "object",
        "required": ["request_id", "label"],
        "properties": {
            "request_id": {"type": "string", "minLength": 1},
            "label": label
            or {"description": "One of the model's classes, or a finite number (regression)."},
            "replace": {"type": "boolean"},
        },
    }
    return {
        "description": "One label, or a list of labels, for request ids this server answered.",
        "anyOf": [item, {"type": "array", "items": item, "minItems": 1}],
    }


FEEDBACK_REQUEST = feedback_request()
FEEDBACK_RESPONSE = {
    "type": "object",
    "required": ["stored", "replaced"],
    "properties": {"stored": {"type": "integer"}, "replaced": {"type": "integer"}},
}
MODEL_INFO = {
    "type": "object",
    "required": ["name", "ready"],
    "properties": {
        "name": {"type": "string"},
        "ready": {"type": "boolean"},
        "primary": {"type": "object"},
        "canary": {"type": "object"},
        "shadow": {"type": "object"},
        "signature": {"type": "object"},
    },
}
SERVER_METADATA = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
MODEL_METADATA = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "object"}},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}
LIVE = {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}
READY = {
    "type": "object",
    "required": ["ready"],
    "properties": {
        "ready": {"type": "boolean"},
        "version": {"type": ["integer", "null"]},
        "store": {"type": "string", "enum": ["ok", "unreachable"]},
        "store_error": {"type": "string"},
        "store_down_since": {"type": ["number", "null"]},
        "replica": {"type": "string"},
    },
}
FLEET = {
    "type": "object",
    "required": ["model", "replicas"],
    "properties": {
        "model": {"type": "string"},
        "fleet": {"type": "boolean"},
        "replica": {"type": "string"},
        "replicas": {"type": "array", "items": {"type": "object"}},
    },
}
MODEL_READY = {
    "type": "object",
    "required": ["name", "ready"],
    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
}


def ready_responses(schema: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """Readiness: 200 ready, 400 not (the OIP convention), both with the same body."""
    content = {"application/json": {"schema": schema}}
    return {
        200: {"description": "Ready.", "content": content},
        400: {"description": "Not ready (loading, or draining).", "content": content},
    }


METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus metrics: the text format, or OpenMetrics when asked for.",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}},
        },
    }
}


def body(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON request body (routes that read it raw)."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


#: Auth failures a route can answer with, by whether it may need a token.
AUTH = (401, 403)
