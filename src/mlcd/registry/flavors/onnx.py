"""ONNX models, run with onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mlcd.registry.flavors.base import Flavor, Predictor, module_of

MODEL_FILE = "model.onnx"
_CLASS_ATTRIBUTES = ("classlabels_ints", "classlabels_strings", "classlabels_int64s")
_NUMPY_OF_ONNX = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "object",
    "tensor(bool)": "bool",
}


class _OnnxPredictor(Predictor):
    """An onnxruntime session fed either one 2-D tensor or one tensor per column."""

    def __init__(self, session: Any, classes: list[Any] | None) -> None:
        super().__init__(session, classes)
        self.inputs = session.get_inputs()
        self.outputs = [o.name for o in session.get_outputs()]

    def _feed(self, X: Any) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
        if len(self.inputs) == 1:
            spec = self.inputs[0]
            dtype = _NUMPY_OF_ONNX.get(spec.type, "float32")
            return {spec.name: frame.to_numpy().astype(dtype)}
        feed = {}
        for position, spec in enumerate(self.inputs):
            column = frame[spec.name] if spec.name in frame.columns else frame.iloc[:, position]
            dtype = _NUMPY_OF_ONNX.get(spec.type, "float32")
            feed[spec.name] = column.to_numpy().astype(dtype).reshape(-1, 1)
        return feed

    def _run(self, X: Any) -> list[Any]:
        return list(self.raw.run(None, self._feed(X)))

    def predict(self, X: Any) -> Any:
        import numpy as np

        result = np.asarray(self._run(X)[0])
        return result.reshape(-1) if result.ndim == 2 and result.shape[1] == 1 else result

    def predict_proba(self, X: Any) -> Any | None:
        import numpy as np

        if self.classes is None or len(self.outputs) < 2:
            return None
        scores = self._run(X)[1]
        if isinstance(scores, list):  # ZipMap output: one {class: probability} per row
            return np.array([[row[c] for c in self.classes] for row in scores], dtype=float)
        return np.asarray(scores, dtype=float)


class OnnxFlavor(Flavor):
    """``onnx.ModelProto`` objects (from skl2onnx, torch.onnx, tf2onnx...)."""

    name = "onnx"
    libraries: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "numpy")

    def detect(self, model: Any) -> bool:
        return module_of(model) == "onnx" and hasattr(model, "SerializeToString")

    def classes(self, model: Any) -> list[Any] | None:
        import onnx

        for node in model.graph.node:
            for attribute in node.attribute:
                if attribute.name in _CLASS_ATTRIBUTES:
                    values = onnx.helper.get_attribute_value(attribute)
                    return [v.decode() if isinstance(v, bytes) else v for v in values]
        return None

    def save(self, model: Any, folder: Path, trusted: bool) -> dict[str, Any]:
        (folder / MODEL_FILE).write_bytes(model.SerializeToString())
        return {"file": MODEL_FILE, "classes": self.classes(model)}

    def load(self, folder: Path, options: Mapping[str, Any], trusted: bool) -> Predictor:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(folder / str(options.get("file", MODEL_FILE))), providers=["CPUExecutionProvider"]
        )
        classes = options.get("classes")
        return _OnnxPredictor(session, None if classes is None else list(classes))
