"""Labeled examples -> a batch of tensors; a bad frame or label is a clear error naming the example."""

import pytest
import torch
from PIL import Image

from hcmrm.train.batching import LabeledExample, collate_labeled
from hcmrm.model.config import preset
from hcmrm.model.frames import FrameDecodeError, encode_image
from hcmrm.model.tokenizer import Tokenizer


def jpeg():
    return encode_image(Image.new("RGB", (20, 20), "red"))


def test_collate_labeled():
    config = preset("tiny")
    tok = Tokenizer.from_config(config)
    batch = collate_labeled(
        [LabeledExample("鞋", "跑步鞋", [jpeg()] * 5, 3), LabeledExample("茶", "绿茶", None, 0)], tok, config
    )
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.token_type_ids.shape
    assert batch.frames.shape == (2, config.max_frames, 3, 32, 32)  # 5 frames sampled down to max_frames
    assert batch.frame_mask.tolist() == [[True, True], [False, False]]
    assert batch.labels.tolist() == [3, 0]
    moved = batch.to("cpu")
    assert torch.equal(moved.input_ids, batch.input_ids)


def test_bad_inputs_are_clear_errors():
    config = preset("tiny")
    tok = Tokenizer.from_config(config)
    with pytest.raises(FrameDecodeError, match="example 1: frame 0: cannot identify image"):
        collate_labeled([LabeledExample("a", "b", None, 1), LabeledExample("a", "b", [b"xx"], 1)], tok, config)
    with pytest.raises(ValueError, match="0..3"):
        collate_labeled([LabeledExample("a", "b", None, 7)], tok, config)
