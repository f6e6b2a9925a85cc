"""A `text_attention: cached` model scores through the engine's per-ad text cache exactly as its own
full-sequence forward does; a `full` model's engine path is untouched."""

import numpy as np
import pytest
import torch

from hcmrm.model.frames import decode_frames, stack_videos
from hcmrm.model.network import build_model
from hcmrm.model.tokenizer import Tokenizer
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig
from tests.hcmrm.test_scoring import direct, png


def sharpened(model):
    """Random weights give near-uniform probabilities; larger ones (and a live match embedding) make a
    mismatch between the two paths visible."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "vision" not in name:
                p.normal_(std=0.15)
    return model.eval()


@pytest.fixture(scope="module")
def cached():
    torch.manual_seed(0)
    return sharpened(build_model("tiny", text_attention="cached"))


ADS = [
    AdPairs("a1", "红色 连衣裙 夏季 新款", [png((255, 0, 0)), png((200, 10, 10))],
            ["连衣裙", "夏天的红色长裙子", "手机", "红色连衣裙夏季"]),
    AdPairs("a2", "手机 新款 拍照", [png((0, 0, 255))], ["拍照手机", "新款手机拍照好"]),
    AdPairs("text-only", "英语 网课 考试 考研 四六级 培训 名师", [], ["英语培训", "考研英语网课推荐", "网课"]),
    AdPairs("short", "鞋", [], ["跑步鞋"]),
]


@pytest.mark.parametrize("pairs_per_batch", [1, 3, 128])
def test_cached_serving_equals_the_full_sequence_forward_of_the_same_model(cached, pairs_per_batch):
    scorer = Scorer(cached, Tokenizer.from_config(cached.config), ScoringConfig(pairs_per_batch=pairs_per_batch))
    results = scorer.score(ADS)
    spread = []
    for ad, result in zip(ADS, results):
        for i, query in enumerate(ad.queries):
            probs, value = direct(cached, query, ad.text, ad.frames)  # the full-sequence forward training runs
            np.testing.assert_allclose(result.probs[i], probs, atol=1e-5)
            assert result.score[i] == pytest.approx(value, abs=1e-5)
            spread.append(result.score[i])
    assert np.ptp(spread) > 0.05  # the pairs really differ, so equality is not two constant outputs
    assert scorer.counters.pairs_scored == sum(len(ad.queries) for ad in ADS)
    assert scorer.counters.vision_encodes == len(ADS)


def test_cached_serving_reads_only_query_tokens_per_pair(cached):
    scorer = Scorer(cached, Tokenizer.from_config(cached.config))
    scorer.score(ADS)
    query_tokens = sum(len(Tokenizer.from_config(cached.config).tokenize([q], 8)[0]) + 2 for ad in ADS for q in ad.queries)
    assert scorer.counters.real_tokens == query_tokens


def test_a_full_model_runs_the_forward_it_ran_before_the_cached_option():
    """The `full` path, written out as it was: every token sees every token, positions count real tokens,
    both sides' match ids. The model's relevance must give exactly (bit for bit) the same."""
    torch.manual_seed(0)
    full = sharpened(build_model("tiny"))
    assert full.config.text_attention == "full" and not full.cached_text
    ad = ADS[0]
    v = full.config.vision
    video = decode_frames(ad.frames, v.image_size, full.config.max_frames, v.mean, v.std)
    enc = Tokenizer.from_config(full.config).encode_pairs(ad.queries, [ad.text] * len(ad.queries))
    ids, mask, types = enc["input_ids"], enc["attention_mask"].bool(), enc["token_type_ids"]
    with torch.inference_mode():
        memory = full.encode_video(*stack_videos([video], full.config.max_frames)).index_select([0] * len(ids))
        x = full.embeddings(ids, (mask.long().cumsum(1) - 1).clamp(min=0), types, mask)
        for layer in full.text_layers:
            x = layer(x, mask)
        for layer, kv in zip(full.fusion_layers, memory.keys_values):
            x = layer(x, mask, memory=memory.embeds, memory_mask=memory.mask, memory_keys_values=kv)
        before = full.relevance_head(x[:, 0])
        now = full.relevance(ids, enc["attention_mask"], types, memory).logits
    assert torch.equal(now, before)
