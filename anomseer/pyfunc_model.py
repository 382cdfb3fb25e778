"""The MLflow pyfunc of an AnomSeer checkpoint, logged as "models from code" (no pickle).

``predict`` takes a DataFrame with a ``values`` column (one series per row: a list of floats or a
JSON string of one) and returns one row per series with ``intervals`` (JSON), ``label``,
``reasoning`` and ``well_formed``. ``mlflow models serve -m models:/anomseer@champion`` serves it.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np


class AnomSeerPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from anomseer.inference import Detector

        self.detector = Detector.from_dir(context.artifacts["hf_model"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        if not isinstance(model_input, pd.DataFrame) or "values" not in model_input.columns:
            raise ValueError("input must be a DataFrame with a 'values' column holding one series per row")
        rows = []
        for raw in model_input["values"]:
            values = np.asarray(json.loads(raw) if isinstance(raw, str) else raw, dtype=np.float64)
            det = self.detector.detect(values)
            rows.append(
                {
                    "intervals": json.dumps([list(iv) for iv in det.intervals]),
                    "label": det.label,
                    "reasoning": det.reasoning,
                    "well_formed": det.well_formed,
                }
            )
        return pd.DataFrame(rows)


mlflow.models.set_model(AnomSeerPyfunc())
