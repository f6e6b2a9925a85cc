"""What the engine does with unusual inputs: queries normalised as training read them, oversized frames refused."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hcmrm.model.frames import FrameLimits
from hcmrm.model.network import build_model
from hcmrm.model.tokenizer import Tokenizer
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig


def png(size, color=(200, 10, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    config = ScoringConfig(frame_limits=FrameLimits(max_pixels=10_000))
    return Scorer(model, Tokenizer.from_config(model.config), config)


def test_a_query_is_scored_as_its_normalised_text(scorer):
    plain, odd = ["iphone 手机"], ["\ufeffｉｐｈｏｎｅ\u200b　手机\x00"]  # BOM, full-width, zero-width, control
    a = scorer.score([AdPairs("a", "手机 拍照", [], plain)])[0]
    b = scorer.score([AdPairs("a", "手机 拍照", [], odd)])[0]
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)


def test_an_oversized_frame_rejects_its_ad_as_oversized_and_spares_the_others(scorer):
    ads = [AdPairs("big", "连衣裙", [png((20, 20)), png((200, 100))], ["裙子"]),
           AdPairs("ok", "连衣裙", [png((40, 30))], ["裙子", "长裙"])]
    big, ok = scorer.score(ads)
    assert big.probs is None
    assert big.reason == "oversized_frame: frame 1: 200x100 = 20,000 pixels, over the cap of 10,000"
    assert ok.reason is None and ok.probs.shape == (2, 4)
