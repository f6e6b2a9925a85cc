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
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
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


def test_a_loaded_model_is_real_and_trains_on(tmp_path):
    """Loading builds the model on the meta device and takes the file's tensors: none may stay meta, and
    fine-tuning from a checkpoint must still update every parameter."""
    save_model(build_model("tiny"), tmp_path)
    loaded = load_model(tmp_path).train()
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert tensors and not any(t.is_meta for t in tensors) and all(p.requires_grad for p in loaded.parameters())
    before = loaded.embeddings.word.weight.detach().clone()
    ids = torch.tensor([[101, 2769, 102, 4263, 102]])
    out = loaded(ids, torch.ones_like(ids), torch.tensor([[0, 0, 0, 1, 1]]), torch.randn(1, 1, 3, 32, 32),
                 torch.tensor([[True]]))
    out.logits.sum().backward()
    torch.optim.SGD(loaded.parameters(), lr=0.1).step()
    assert not torch.equal(before, loaded.embeddings.word.weight)


def test_a_weights_file_missing_a_tensor_is_a_model_error(tmp_path):
    from safetensors.torch import load_file, save_file

    save_model(build_model("tiny"), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state.pop(next(iter(state)))
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ModelError, match="does not match its config: missing"):
        load_model(tmp_path)


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


def saved_with_config(tmp_path, change):
    """A tiny checkpoint whose config.json `change(meta)` edited."""
    save_model(build_model("tiny"), tmp_path)
    path = tmp_path / "config.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return tmp_path


def test_a_config_whose_sizes_do_not_fit_the_weights_is_a_model_error_that_says_so(tmp_path):
    def wider(meta):
        meta["config"]["text"]["hidden"] *= 2
        meta["config"]["text"]["intermediate"] = meta["config"]["text"]["hidden"] * 4

    with pytest.raises(ModelError) as error:
        load_model(saved_with_config(tmp_path, wider))
    assert error.value.exit_code == 4 and "does not match its config" in str(error.value)
    assert "size mismatch" in str(error.value)


def test_a_config_with_sizes_that_do_not_fit_or_an_unknown_key_is_a_model_error(tmp_path):
    def odd_heads(meta):
        meta["config"]["text"]["heads"] = 7  # hidden is not a multiple of it

    with pytest.raises(ModelError, match="does not describe an HCMRM model: text.hidden .* not divisible"):
        load_model(saved_with_config(tmp_path / "a", odd_heads))
    with pytest.raises(ModelError, match="does not describe an HCMRM model: .*colour"):
        load_model(saved_with_config(tmp_path / "b", lambda meta: meta["config"].update(colour="red")))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON"):
        load_model(tmp_path / "c")


def test_a_folder_written_before_tokenizer_copies_loads_with_the_vocabulary_its_config_names():
    from hcmrm.model.tokenizer import Tokenizer
    from hcmrm.settings import PACKAGE_DIR

    folder = PACKAGE_DIR / "models" / "kuake-small-match"
    assert not (folder / "vocab.txt").exists()  # saved before model folders carried their tokenizer
    model = load_model(folder)
    assert Tokenizer.from_config(model.config).vocab_size == model.config.text.vocab_size == 21128


def test_a_folder_carries_its_tokenizer_and_a_foreign_one_is_refused(tmp_path):
    torch.manual_seed(0)
    save_model(build_model("tiny"), tmp_path / "m")
    assert (tmp_path / "m" / "vocab.txt").read_bytes()[:5] == b"[PAD]"
    (tmp_path / "m" / "vocab.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    with pytest.raises(ModelError, match="is not the 'bert-base-chinese' vocabulary"):
        load_model(tmp_path / "m")
