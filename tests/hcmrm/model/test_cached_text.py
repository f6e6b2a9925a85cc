"""`text_attention: cached`: the video text's states do not depend on the query, so they are computed once
per ad, and [CLS] + query against them give what the full-sequence forward of the same model gives."""

import pytest
import torch

from hcmrm.config import ConfigError
from hcmrm.model.config import preset
from hcmrm.model.network import build_model
from hcmrm.model.tokenizer import Tokenizer

TEXTS = ["苹果手机壳 红色 防摔", "夏季透气跑步鞋 男女同款", "保温杯 大容量"]
QUERIES = ["红色手机壳", "跑步鞋", "杯子"]


@pytest.fixture(scope="module")
def cached():
    torch.manual_seed(0)
    model = build_model("tiny", text_attention="cached").eval()
    torch.nn.init.normal_(model.embeddings.match.weight, std=0.5)  # a trained match embedding is not zero
    return model


def frames(model, n):
    img = model.config.vision.image_size
    torch.manual_seed(2)
    return torch.randn(n, 2, 3, img, img), torch.tensor([[True, True], [True, False], [False, False]][:n])


def test_video_text_states_do_not_depend_on_the_query(cached):
    tok = Tokenizer.from_config(cached.config)
    text = TEXTS[0]
    states = []
    for query in ["红色手机壳", "防摔 苹果", "完全无关的查询词语"]:  # shares characters (match ids), or not
        enc = tok.encode_pairs([query], [text])
        with torch.inference_mode():
            x = cached.encode_text(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        states.append(x[0, enc["token_type_ids"][0].bool()])
    assert torch.allclose(states[0], states[1], atol=1e-6) and torch.allclose(states[0], states[2], atol=1e-6)


def test_cached_relevance_equals_the_full_sequence_forward(cached):
    tok = Tokenizer.from_config(cached.config)
    with torch.inference_mode():
        video = cached.encode_video(*frames(cached, 3))
        enc = tok.encode_pairs(QUERIES, TEXTS)
        packed = cached.relevance(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], video)
        segments = tok.encode_text_segments(TEXTS)
        text = cached.encode_video_text(segments["input_ids"], segments["attention_mask"], video)
        queries = tok.encode_texts(QUERIES, cached.config.max_query_len)
        split = cached.relevance_cached(queries["input_ids"], queries["attention_mask"], text, video)
        # every query against the first ad: the per-ad cache gathered per pair
        again = cached.relevance_cached(queries["input_ids"], queries["attention_mask"], text.select([0, 0, 0]),
                                        video.index_select([0, 0, 0]))
        enc0 = tok.encode_pairs(QUERIES, [TEXTS[0]] * 3)
        packed0 = cached.relevance(enc0["input_ids"], enc0["attention_mask"], enc0["token_type_ids"],
                                   video.index_select([0, 0, 0]))
    assert torch.allclose(split.logits, packed.logits, atol=1e-5)
    assert torch.allclose(again.logits, packed0.logits, atol=1e-5)
    assert (packed.logits[0] - packed.logits[1]).abs().max() > 1e-3  # the pairs differ


def test_the_mask_changes_the_model_and_full_refuses_the_cached_entry_points(cached):
    full = build_model(preset("tiny")).eval()
    full.load_state_dict(cached.state_dict())
    tok = Tokenizer.from_config(cached.config)
    enc = tok.encode_pairs(QUERIES, TEXTS)
    with torch.inference_mode():
        video = full.empty_video(3)
        a = full.relevance(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], video).logits
        b = cached.relevance(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], video).logits
    assert not torch.allclose(a, b)
    segments = tok.encode_text_segments(TEXTS)
    with pytest.raises(ValueError, match="text_attention: cached"):
        full.encode_video_text(segments["input_ids"], segments["attention_mask"], video)


def test_text_attention_is_full_or_cached():
    assert preset("base").text_attention == "full"
    with pytest.raises((ConfigError, ValueError), match="text_attention must be one of"):
        preset("tiny", text_attention="sparse")


def test_match_text_side_off_keeps_only_the_query_sides_match_ids():
    """The ablation's diagnostic: `full` attention with the text side's match ids dropped as `cached` drops them."""
    torch.manual_seed(0)
    both = build_model("tiny").eval()
    torch.nn.init.normal_(both.embeddings.match.weight, std=0.5)
    query_only = build_model("tiny", text={"match_text_side": False}).eval()
    query_only.load_state_dict(both.state_dict())
    enc = Tokenizer.from_config(both.config).encode_pairs(["红色手机", "完全无关"], ["苹果手机壳 红色"] * 2)
    ids, mask, types = enc["input_ids"], enc["attention_mask"].bool(), enc["token_type_ids"]
    match = query_only._query_side_match(ids, types, mask)
    assert match[0, 1:5].gt(0).all() and match[1].eq(0).all()  # the shared query characters, and none
    assert match[types.bool()].eq(0).all()  # no text token is told what the query shares
    with torch.inference_mode():
        assert not torch.allclose(both.encode_text(ids, mask, types), query_only.encode_text(ids, mask, types))
