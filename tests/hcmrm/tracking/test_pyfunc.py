"""The pyfunc flavor: a saved model folder -> an MLflow pyfunc folder whose predict equals the engine."""

import io

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from hcmrm.model.checkpoint import save_model
from hcmrm.model.network import build_model
from hcmrm.scoring import Scorer
from hcmrm.tracking.pyfunc import save_pyfunc


def png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    save_model(build_model("tiny").eval(), folder)
    return folder


def test_pyfunc_predict_equals_the_engine_pair_by_pair(model_dir, tmp_path):
    rows = pd.DataFrame({
        "query": ["红色连衣裙", "手机", "英语网课", "手机"],
        "video_text": ["夏季 连衣裙 红色", "拍照 手机 新款", "英语 课程", "拍照 手机 新款"],
        "frames": [[png((200, 0, 0))], [], None, [png((0, 0, 200)), png((0, 200, 0))]],
    })
    model = mlflow.pyfunc.load_model(str(save_pyfunc(model_dir, tmp_path / "pyfunc")))
    got = model.predict(rows)

    frames = [list(f) if f is not None else None for f in rows.frames]
    probs, score = Scorer.from_dir(model_dir).score_pairs(rows["query"].tolist(), rows.video_text.tolist(), frames)
    assert list(got.columns) == ["p_bad", "p_less", "p_good", "p_excellent", "score", "label"]
    np.testing.assert_allclose(got.iloc[:, :4].to_numpy(), probs, atol=1e-6)
    np.testing.assert_allclose(got.score.to_numpy(), score, atol=1e-6)
    assert got.label.tolist() == probs.argmax(axis=1).tolist()


def test_pyfunc_without_frames_scores_on_text_and_names_missing_columns(model_dir, tmp_path):
    model = mlflow.pyfunc.load_model(str(save_pyfunc(model_dir, tmp_path / "pyfunc")))
    got = model.predict(pd.DataFrame({"query": ["手机"], "video_text": ["拍照 手机"]}))
    assert got.shape == (1, 6) and got.iloc[0, :4].sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match=r"lacks columns \['video_text'\]"):
        model.predict(pd.DataFrame({"query": ["手机"]}))


def test_positional_columns_as_spark_udf_passes_them_are_read_as_query_text_frames(model_dir, tmp_path):
    model = mlflow.pyfunc.load_model(str(save_pyfunc(model_dir, tmp_path / "pyfunc")))
    named = model.predict(pd.DataFrame({"query": ["手机"], "video_text": ["拍照 手机"], "frames": [[png((9, 9, 9))]]}))
    positional = model.predict(pd.DataFrame({"0": ["手机"], "1": ["拍照 手机"], "2": [[png((9, 9, 9))]]}))
    pd.testing.assert_frame_equal(named, positional)
