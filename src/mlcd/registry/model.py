"""LoadedModel: what ``mlcd.load_model`` returns, the same for every flavor.

The server and monitoring rely on exactly this surface: ``predict(df)``, ``predict_proba(df)``
(None when the model has no probabilities), ``classes``, ``signature``, ``name``,
``version`` and ``digest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlcd.errors import UsageError
from mlcd.registry.flavors import Predictor
from mlcd.registry.package import ModelPackage
from mlcd.registry.signature import INPUT_NDARRAY, Signature


class LoadedModel:
    """A verified model package loaded through its flavor."""

    def __init__(
        self,
        package: ModelPackage,
        predictor: Predictor,
        name: str | None = None,
        version: int | None = None,
        digest: str | None = None,
    ) -> None:
        self.package = package
        self.predictor = predictor
        self.name = name
        self.version = version
        self.digest = digest
        self.signature: Signature = package.signature
        output = package.signature.output
        classes = list(output.classes) if output.classes is not None else predictor.classes
        self.classes: list[Any] | None = classes if output.task == "classification" else None
        # Packages saved before the signature recorded it: a model fitted on an array gets one.
        raw = predictor.raw
        self._array = package.signature.input_type == INPUT_NDARRAY or (
            package.flavor in ("sklearn", "xgboost")
            and getattr(raw, "n_features_in_", None) is not None
            and getattr(raw, "feature_names_in_", None) is None
        )

    @property
    def flavor(self) -> str:
        """The flavor the model was saved with."""
        return self.package.flavor

    @property
    def path(self) -> Path:
        """The verified package folder the model was loaded from."""
        return self.package.path

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return self.package.task

    @property
    def raw(self) -> Any:
        """The native model object (a scikit-learn estimator, an XGBoost model...)."""
        return self.predictor.raw

    def prepare(self, data: Any) -> Any:
        """Rows in the form the flavor wants: signature columns, in order, right dtypes.

        Raises:
            UsageError: a signature column is missing, or the input is not tabular.
        """
        import pandas as pd

        frame = _as_frame(data, self.signature)
        columns = self.signature.columns
        if columns:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise UsageError(
                    f"input lacks column(s) {', '.join(map(repr, missing))} "
                    f"that model {self.label} needs",
                    hint=f"send every signature column: {', '.join(columns)}",
                )
            frame = frame[columns]
            for spec in self.signature.inputs:
                series = frame[spec.name]
                if spec.kind == "numeric" and not pd.api.types.is_numeric_dtype(series.dtype):
                    try:
                        converted = pd.to_numeric(series, errors="raise")
                    except (ValueError, TypeError) as exc:
                        raise UsageError(
                            f"column '{spec.name}' must be numeric ({spec.dtype}): {exc}",
                            hint="send numbers (or null where the column is nullable)",
                        ) from exc
                    frame = frame.assign(**{spec.name: converted})
        if self._array:
            return frame.to_numpy()
        return frame

    def predict(self, data: Any) -> Any:
        """Predicted labels or values as a 1-D numpy array."""
        import numpy as np

        return np.asarray(self.predictor.predict(self.prepare(data)))

    def predict_proba(self, data: Any) -> Any | None:
        """Class probabilities (rows x classes, in ``classes`` order), or None."""
        import numpy as np

        if self.classes is None:
            return None
        result = self.predictor.predict_proba(self.prepare(data))
        return None if result is None else np.asarray(result, dtype=float)

    @property
    def label(self) -> str:
        """``name/version`` when registered, else the package path."""
        if self.name is not None and self.version is not None:
            return f"{self.name}/{self.version}"
        return str(self.package.path)

    def __repr__(self) -> str:
        return f"LoadedModel({self.label!r}, flavor={self.flavor!r})"


def _as_frame(data: Any, signature: Signature) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        values = dict(data)
        if values and not any(
            isinstance(v, Sequence | np.ndarray) and not isinstance(v, str) for v in values.values()
        ):
            values = {k: [v] for k, v in values.items()}  # one row given as a flat mapping
        return pd.DataFrame(values)
    if isinstance(data, np.ndarray):
        array = data.reshape(1, -1) if data.ndim == 1 else data
        columns = signature.columns or [f"x{i}" for i in range(array.shape[1])]
        if array.shape[1] != len(columns):
            raise UsageError(
                f"input has {array.shape[1]} columns, the model takes {len(columns)}",
                hint=f"columns in order: {', '.join(columns)}",
            )
        return pd.DataFrame(array, columns=columns)
    if isinstance(data, Sequence) and data and isinstance(data[0], Mapping):
        return pd.DataFrame(list(data))
    raise UsageError(
        f"cannot score a {type(data).__name__}",
        hint="pass a pandas DataFrame, a dict of columns, a list of row dicts or a 2-D array",
    )
