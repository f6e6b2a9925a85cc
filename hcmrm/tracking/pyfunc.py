"""The MLflow pyfunc flavor of an HCMRM model, for the stock MLflow paths.

    from hcmrm.tracking.pyfunc import save_pyfunc
    save_pyfunc("hcmrm/models/kuake-small-match", "runs/hcmrm-pyfunc")
    model = mlflow.pyfunc.load_model("runs/hcmrm-pyfunc")
    udf = mlflow.pyfunc.spark_udf(spark, "runs/hcmrm-pyfunc", result_type=RESULT_TYPE)  # udf(query, video_text[, frames])
    model.predict(pd.DataFrame({"query": [...], "video_text": [...], "frames": [[jpeg, ...], ...]}))

One row is one (query, video) pair: `query`, `video_text` (the text `video_texts` holds for the
video) and, optionally, `frames` (encoded images). The output has the columns of
hcmrm.tables.PREDICTION (p_bad .. p_excellent, score, label), computed by the same engine the
nightly job runs (Scorer.score_pairs: pairs of one video in a call share its vision encode). The
model folder travels inside the pyfunc folder as an artifact; where it is loaded, `hcmrm` must be
importable (the wheel, or `make dist`'s packed environment on executors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hcmrm.tables import PREDICTION

MODEL_ARTIFACT = "hcmrm_model"
INPUT_COLUMNS = ("query", "video_text")  # required; `frames` is optional
RESULT_TYPE = ", ".join(f"{f.name} {'int' if f.name == 'label' else 'double'}" for f in PREDICTION)  # for spark_udf


def python_model():
    """A pyfunc PythonModel around hcmrm.scoring.Scorer (CPU unless torch sees a GPU). Made on call:
    importing mlflow.pyfunc loads pyspark, which nothing in hcmrm may do at import time."""
    import mlflow.pyfunc

    class HcmrmPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            import torch

            from hcmrm.scoring import Scorer

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self.scorer = Scorer.from_dir(context.artifacts[MODEL_ARTIFACT], device=device)

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            model_input = by_name(model_input)
            missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
            if missing:
                raise ValueError(f"the input lacks columns {missing}; it needs {list(INPUT_COLUMNS)} "
                                 f"(+ optional frames)")
            frames = None
            if "frames" in model_input.columns:
                frames = [[bytes(f) for f in v] if v is not None else None for v in model_input["frames"]]
            probs, score = self.scorer.score_pairs(model_input["query"].fillna("").tolist(),
                                                   model_input["video_text"].fillna("").tolist(), frames)
            out = pd.DataFrame(probs.astype(np.float64), columns=[f.name for f in PREDICTION][:4])
            out["score"] = score.astype(np.float64)
            out["label"] = probs.argmax(axis=1).astype(np.int32)
            return out

    return HcmrmPyfunc()


def by_name(frame: pd.DataFrame) -> pd.DataFrame:
    """spark_udf of a model without a signature passes its arguments as columns 0, 1[, 2]: name them."""
    if not set(INPUT_COLUMNS) & set(map(str, frame.columns)) and frame.shape[1] in (2, 3):
        return frame.set_axis([*INPUT_COLUMNS, "frames"][: frame.shape[1]], axis=1)
    return frame


def save_pyfunc(model_dir: str | Path, out: str | Path) -> Path:
    """Write the pyfunc folder for a saved HCMRM model folder (`hcmrm.model.checkpoint.save_model`)."""
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(path=str(out), python_model=python_model(), artifacts={MODEL_ARTIFACT: str(model_dir)},
                             pip_requirements=["torch", "transformers", "safetensors", "pillow", "pandas"])
    return Path(out)
