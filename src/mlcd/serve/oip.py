"""The Open Inference Protocol v2 (KServe, Triton, MLServer): metadata and tensors <-> rows.

A model's inputs are declared as one tensor per signature column (``name`` = the column,
``shape`` ``[-1]``). An inference request may send those tensors, or a single 2-D tensor
of shape ``[rows, columns]`` with the columns in signature order (what MLServer's scikit-learn
runtime takes). Outputs: ``predict`` (``[rows]``), ``predict_proba`` (``[rows, classes]``,
classifiers) and ``request_id`` (``[rows]``, the ids ``POST /v1/feedback`` takes).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlcd.serve.validation import Inputs, RequestError

if TYPE_CHECKING:
    from mlcd.serve.holder import Served
    from mlcd.serve.validation import InputPlan

DATATYPES = frozenset(
    {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    }
)  # fmt: skip
_NUMERIC = DATATYPES - {"BOOL", "BYTES"}
_FROM_NUMPY = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
OUTPUT_PREDICT = "predict"
OUTPUT_PROBA = "predict_proba"
OUTPUT_IDS = "request_id"


def datatype(dtype: str) -> str:
    """The OIP datatype of a numpy/pandas dtype name (text and categories are ``BYTES``)."""
    return _FROM_NUMPY.get(dtype.lower().removeprefix("pd."), "BYTES")


#: numpy dtype -> OIP datatype of the predictions (``str(dtype)`` costs more than the rest
#: of building a one-row answer)
_DATATYPE_OF: dict[Any, str] = {}


def _datatype_of(dtype: Any) -> str:
    found = _DATATYPE_OF.get(dtype)
    if found is None:
        found = datatype(str(dtype))
        if len(_DATATYPE_OF) < 64:
            _DATATYPE_OF[dtype] = found
    return found


def model_metadata(served: Served, versions: list[str]) -> dict[str, Any]:
    """The ``$metadata_model_response`` of a served version."""
    inputs = [
        {"name": spec.name, "datatype": datatype(spec.dtype), "shape": [-1]}
        for spec in served.plan.specs
    ]
    output = served.model.signature.output
    outputs = [{"name": OUTPUT_PREDICT, "datatype": datatype(output.dtype), "shape": [-1]}]
    if served.classes is not None:
        outputs.append(
            {"name": OUTPUT_PROBA, "datatype": "FP64", "shape": [-1, len(served.classes)]}
        )
    outputs.append({"name": OUTPUT_IDS, "datatype": "BYTES", "shape": [-1]})
    return {
        "name": served.name,
        "versions": versions,
        "platform": served.flavor or "mlcd",
        "inputs": inputs,
        "outputs": outputs,
    }


def parse_request(payload: Any, served: Served) -> tuple[Inputs, str | None, list[str] | None]:
    """Rows, the request ``id`` and the requested output names of an ``$inference_request``.

    Raises:
        RequestError: 400 for a malformed request or a tensor whose data does not fit its
            shape; 413 for too many rows; 422 for values that do not fit the signature.
    """
    if not isinstance(payload, dict):
        raise RequestError(400, "an inference request must be a JSON object with 'inputs'")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(400, "'id' must be a string")
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise RequestError(400, "'inputs' must be a non-empty list of input tensors")
    outputs = _requested_outputs(payload.get("outputs"), served)
    plan = served.plan
    if len(tensors) == 1:
        inputs = _one_matrix(tensors[0], plan)
        if inputs is not None:
            return inputs, request_id, outputs
    parsed = [_tensor(t, i) for i, t in enumerate(tensors)]
    by_name = {name: (shape, dtype, data) for name, shape, dtype, data in parsed}
    if len(by_name) != len(parsed):
        raise RequestError(400, "two input tensors have the same name")
    if all(name in by_name for name in plan.names) and len(by_name) == len(plan.names):
        columns: dict[str, list[Any]] = {}
        rows = -1
        for name in plan.names:
            shape, _dtype, data = by_name[name]
            if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
                raise RequestError(
                    400,
                    f"input '{name}' has shape {shape}: a column tensor is [rows] or [rows, 1]",
                )
            if rows not in (-1, shape[0]):
                raise RequestError(
                    400, f"input '{name}' has {shape[0]} rows, the other inputs have {rows}"
                )
            rows = shape[0]
            columns[name] = data
        return plan.from_columns(columns, "the inputs", checked=False), request_id, outputs
    if len(parsed) == 1:
        name, shape, _dtype, data = parsed[0]
        width = len(plan.names)
        if len(shape) == 2 and shape[1] == width:
            matrix = [data[r * width : (r + 1) * width] for r in range(shape[0])]
            if not matrix:
                raise RequestError(422, f"input '{name}' holds no rows")
            return plan.from_matrix(matrix, plan.names, f"input '{name}'"), request_id, outputs
        if len(shape) == 1 and width == 1:
            return plan.from_matrix([[v] for v in data], plan.names), request_id, outputs
        raise RequestError(
            400,
            f"input '{name}' has shape {shape}; send one tensor of shape [rows, {width}] "
            f"(columns {', '.join(plan.names)}), or one tensor per column",
        )
    missing = [n for n in plan.names if n not in by_name]
    extra = [n for n in by_name if n not in plan.names]
    problem = f"missing input '{missing[0]}'" if missing else f"unexpected input '{extra[0]}'"
    raise RequestError(
        400,
        f"{problem}: the model takes one tensor per column ({', '.join(plan.names)}) "
        f"or a single [rows, {len(plan.names)}] tensor",
    )


def _one_matrix(tensor: Any, plan: InputPlan) -> Inputs | None:
    """The common request at full speed: one numeric ``[rows, columns]`` tensor with flat
    ``data`` of plain numbers, for a model that takes only floats. None for anything else,
    which :func:`_tensor` and the plan check (and explain) value by value; what this accepts
    they accept too, with the same rows."""
    if type(tensor) is not dict or tensor.get("datatype") not in _NUMERIC:
        return None
    name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
    width = len(plan.names)
    if (
        type(name) is not str
        or not name
        or type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or type(shape[1]) is not int
        or shape[1] != width
        or type(data) is not list
        or (width == 1 and name == plan.names[0])  # that is the one column's own tensor
    ):
        return None
    return plan.from_numbers(data, shape[0])


def _tensor(tensor: Any, index: int) -> tuple[str, list[int], str, list[Any]]:
    if not isinstance(tensor, dict):
        raise RequestError(400, f"inputs[{index}] must be an object")
    name = tensor.get("name")
    shape = tensor.get("shape")
    dtype = tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise RequestError(400, f"inputs[{index}] needs a 'name' (string)")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise RequestError(
            400, f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}"
        )
    if dtype not in DATATYPES:
        raise RequestError(
            400, f"input '{name}': unknown datatype {dtype!r}; use one of {sorted(DATATYPES)}"
        )
    if "data" not in tensor:
        raise RequestError(400, f"input '{name}' has no 'data'")
    data = tensor["data"]
    flat = _flatten(data) if isinstance(data, list) else [data]
    expected = math.prod(shape)
    if len(flat) != expected:
        raise RequestError(
            400,
            f"input '{name}': shape {shape} needs {expected} values, 'data' holds {len(flat)}",
        )
    _check_datatype(name, dtype, flat)
    return name, shape, dtype, flat


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for value in data:
        if isinstance(value, list):
            out.extend(_flatten(value))
        else:
            out.append(value)
    return out


def _check_datatype(name: str, dtype: str, values: list[Any]) -> None:
    if dtype in _NUMERIC:
        for i, v in enumerate(values):
            if type(v) not in (int, float) and v is not None:
                raise RequestError(
                    400, f"input '{name}' is {dtype} but element {i} is {v!r}", column=name
                )
    elif dtype == "BOOL":
        for i, v in enumerate(values):
            if not isinstance(v, bool) and v is not None:
                raise RequestError(
                    400, f"input '{name}' is BOOL but element {i} is {v!r}", column=name
                )


def _requested_outputs(value: Any, served: Served) -> list[str] | None:
    if value is None:
        return None
    known = [OUTPUT_PREDICT, OUTPUT_IDS] + ([OUTPUT_PROBA] if served.classes is not None else [])
    if not isinstance(value, list):
        raise RequestError(400, "'outputs' must be a list of {\"name\": ...} objects")
    names = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in known:
            raise RequestError(
                400, f"unknown output {name!r}: this model produces {', '.join(known)}"
            )
        names.append(name)
    return names


def response(
    served: Served,
    predictions: Any,
    proba: Any,
    request_ids: list[str],
    request_id: str | None,
    outputs: list[str] | None,
) -> dict[str, Any]:
    """The ``$inference_response`` for one answered request."""
    rows = len(request_ids)
    wanted = outputs or [OUTPUT_PREDICT, OUTPUT_PROBA, OUTPUT_IDS]
    tensors = []
    for name in wanted:
        if name == OUTPUT_PREDICT:
            tensors.append(
                {
                    "name": OUTPUT_PREDICT,
                    "shape": [rows],
                    "datatype": _datatype_of(predictions.dtype),
                    "data": predictions.tolist(),
                }
            )
        elif name == OUTPUT_PROBA and proba is not None:
            tensors.append(
                {
                    "name": OUTPUT_PROBA,
                    "shape": [rows, int(proba.shape[1])],
                    "datatype": "FP64",
                    "data": proba.ravel().tolist(),
                }
            )
        elif name == OUTPUT_IDS:
            tensors.append(
                {"name": OUTPUT_IDS, "shape": [rows], "datatype": "BYTES", "data": request_ids}
            )
    out: dict[str, Any] = {
        "model_name": served.name,
        "model_version": str(served.version),
        "id": request_id if request_id is not None else request_ids[0],
        "outputs": tensors,
    }
    return out
