"""Real-weight loading, on small checkpoints made here: a HF BERT folder and a timm ViT state dict."""

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer
from transformers import BertConfig, BertForMaskedLM, BertModel

from hcmrm.model.config import preset
from hcmrm.model.network import HCMRM
from hcmrm.model.import_weights import load_bert_weights, load_vit_weights

BERT_LAYER = {
    "attention.self.query": "attention.query", "attention.self.key": "attention.key",
    "attention.self.value": "attention.value", "attention.output.dense": "attention.out",
    "attention.output.LayerNorm": "attention.norm", "intermediate.dense": "mlp.fc",
    "output.dense": "mlp.proj", "output.LayerNorm": "mlp.norm",
}


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return HCMRM(preset("tiny"))


def small_bert_config(layers=4):
    t = preset("tiny").text
    return BertConfig(vocab_size=t.vocab_size, hidden_size=t.hidden, num_hidden_layers=layers,
                      num_attention_heads=t.heads, intermediate_size=t.intermediate, max_position_embeddings=128,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def expected_bert_places(text_layers=2, fusion_layers=2):
    """HF BertModel key -> HCMRM key, spelled out independently of hcmrm.model.import_weights."""
    places = {
        "embeddings.word_embeddings.weight": "embeddings.word.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    for i in range(text_layers + fusion_layers):
        stack, j = ("text_layers", i) if i < text_layers else ("fusion_layers", i - text_layers)
        for hf, ours in BERT_LAYER.items():
            for leaf in ("weight", "bias"):
                places[f"encoder.layer.{i}.{hf}.{leaf}"] = f"{stack}.{j}.{ours}.{leaf}"
    return places


def test_bert_folder_lands_in_text_and_fusion_encoders(tiny, tmp_path):
    torch.manual_seed(1)
    bert = BertModel(small_bert_config()).eval()
    bert.save_pretrained(tmp_path / "bert")
    cross_before = {n: p.clone() for n, p in tiny.named_parameters() if ".cross_attention." in n}
    report = load_bert_weights(tiny, tmp_path / "bert")

    source = bert.state_dict()
    ours = dict(tiny.named_parameters())
    for hf_key, our_key in expected_bert_places().items():
        assert torch.equal(ours[our_key], source[hf_key]), f"{hf_key} -> {our_key}"
    # positions: the tiny model keeps the first max_positions of the checkpoint's 128
    assert torch.equal(ours["embeddings.position.weight"], source["embeddings.position_embeddings.weight"][:64])
    assert set(report.loaded.values()) >= set(expected_bert_places())
    assert any(k.startswith("pooler.") for k in report.skipped)
    for name, before in cross_before.items():  # BERT has no cross-attention: it stays fresh
        assert torch.equal(ours[name], before) and name in report.fresh

    # and the text encoder computes what BERT's first 2 layers compute
    tiny.eval()
    ids = torch.tensor([[101, 2769, 4263, 102, 704, 1744, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0]])
    with torch.no_grad():
        hf = bert(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        mine = tiny.encode_text(ids, mask, types)
    assert torch.allclose(mine[:, :7], hf.hidden_states[2][:, :7], atol=1e-5)


def test_masked_lm_checkpoint_fills_the_mlm_head(tiny, tmp_path):
    torch.manual_seed(2)
    bert = BertForMaskedLM(small_bert_config(layers=6))  # more layers than the model: the rest are dropped
    bert.save_pretrained(tmp_path / "mlm")
    report = load_bert_weights(tiny, tmp_path / "mlm")
    source = bert.state_dict()
    ours = dict(tiny.named_parameters())
    assert torch.equal(ours["heads.mlm.dense.weight"], source["cls.predictions.transform.dense.weight"])
    assert torch.equal(ours["heads.mlm.norm.bias"], source["cls.predictions.transform.LayerNorm.bias"])
    assert torch.equal(ours["heads.mlm.bias"], source["cls.predictions.bias"])
    assert torch.equal(ours["fusion_layers.1.mlp.fc.weight"], source["bert.encoder.layer.3.intermediate.dense.weight"])
    assert any(k.startswith("bert.encoder.layer.5.") for k in report.skipped)


def test_bert_of_another_size_is_refused(tiny, tmp_path):
    config = small_bert_config()
    config.hidden_size, config.num_attention_heads = 48, 2
    BertModel(config).save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match="hidden_size is 48"):
        load_bert_weights(tiny, tmp_path / "wide")
    with pytest.raises(FileNotFoundError):
        load_bert_weights(tiny, tmp_path)


def small_vit(img_size=32, depth=4):
    v = preset("tiny").vision
    return VisionTransformer(img_size=img_size, patch_size=v.patch_size, embed_dim=v.width, depth=depth,
                             num_heads=v.heads, num_classes=10).eval()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_vit_checkpoint_is_cut_to_the_first_blocks(tiny, tmp_path, fmt):
    torch.manual_seed(3)
    vit = small_vit(depth=4)
    path = tmp_path / f"vit.{fmt}"
    if fmt == "pth":
        torch.save(vit.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    report = load_vit_weights(tiny, path)
    ours = dict(tiny.named_parameters())
    for key, value in vit.state_dict().items():
        if key.startswith(("blocks.2.", "blocks.3.", "head.")):
            assert key in report.skipped
        else:
            assert torch.equal(ours[f"vision.{key}"], value), key
            assert report.loaded[f"vision.{key}"] == key
    assert report.fresh == []
    # the tower computes the checkpoint's first 2 blocks, then its final norm
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = vit._pos_embed(vit.patch_embed(images))
        for block in vit.blocks[:2]:
            x = block(x)
        expected = vit.norm(x)
        assert torch.allclose(tiny.eval().vision.forward_features(images), expected, atol=1e-5)


def test_vit_at_another_image_size_has_its_positions_resampled(tiny, tmp_path):
    vit = small_vit(img_size=64)  # 4x4 patch grid, the tiny model has 2x2
    torch.save({"state_dict": vit.state_dict()}, tmp_path / "vit64.pth")
    report = load_vit_weights(tiny, tmp_path / "vit64.pth")
    assert report.loaded["vision.pos_embed"] == "pos_embed"
    assert tiny.vision.pos_embed.shape == (1, 5, 32)
    assert torch.equal(tiny.vision.pos_embed[0, 0], vit.pos_embed[0, 0])  # the CLS position is kept as is


def test_not_a_vit(tiny, tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="patch_embed"):
        load_vit_weights(tiny, tmp_path / "other.pth")
