"""Save/load: safetensors + config.json (no pickle); a round trip gives identical outputs."""

import json

import pytest
import torch

from hcmrm.errors import ModelError
from hcmrm.model.checkpoint import load_model, save_model
from hcmrm.model.config import preset
from hcmrm.model.network import build_model


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model(preset("tiny", head="bce", max_frames=3)).eval()
    save_model(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["config"]["max_frames"] == 3
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    ids = torch.tensor([[101, 2769, 102, 4263, 102]])
    mask, types = torch.ones_like(ids), torch.tensor([[0, 0, 0, 1, 1]])
    frames, frame_mask = torch.randn(1, 2, 3, 32, 32), torch.tensor([[True, False]])
    with torch.inference_mode():
        a = model(ids, mask, types, frames, frame_mask)
        b = loaded(ids, mask, types, frames, frame_mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.score, b.score)
    for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        load_model(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_weights_file_is_a_model_error_naming_the_file(tmp_path, damage):
    save_model(build_model("tiny"), tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"\xff" * 64 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"model.safetensors cannot be read, the file is corrupt or truncated"):
        load_model(tmp_path)
