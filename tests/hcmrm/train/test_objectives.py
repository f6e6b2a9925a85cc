"""Pre-training: ITC + ITM + MLM + PQVM on the tiny model, with and without frames, and with momentum."""

import pytest
import torch
from PIL import Image

from hcmrm.train.batching import PretrainExample, collate_pretrain, pack_pairs
from hcmrm.model.config import preset
from hcmrm.model.frames import encode_image
from hcmrm.model.network import HCMRM
from hcmrm.train.objectives import LossWeights, Pretrainer
from hcmrm.model.tokenizer import Tokenizer

TERMS = ("itc", "itm", "mlm", "pqvm")


def jpeg(color):
    return encode_image(Image.new("RGB", (24, 24), color))


def examples():
    colors = ["red", "green", "blue", "yellow", "purple", "white"]
    items = [("手机壳", "苹果手机壳防摔超薄透明"), ("跑步鞋", "夏季透气运动跑步鞋男款"), ("口红", "哑光口红持久不掉色"),
             ("绿茶", "明前龙井绿茶礼盒装"), ("耳机", "无线蓝牙降噪耳机"), ("帐篷", "户外露营帐篷防雨")]
    out = [PretrainExample(q, t, [jpeg(c), jpeg(c)]) for (q, t), c in zip(items, colors)]
    out += [PretrainExample("新闻", "今天北京天气晴朗气温升高", None), PretrainExample("足球", "国家队赢得了比赛", [])]
    return out


def batch_for(config, items=None, seed=0):
    return collate_pretrain(items or examples(), Tokenizer.from_config(config), config,
                            generator=torch.Generator().manual_seed(seed))


def test_collate_pretrain_shapes():
    config = preset("tiny")
    batch = batch_for(config)
    assert batch.query_ids.shape[0] == batch.text_ids.shape[0] == 8
    assert batch.mlm_ids.shape == batch.mlm_labels.shape == batch.text_ids.shape
    assert batch.frame_mask.sum(1).tolist() == [2] * 6 + [0, 0]
    assert ((batch.mlm_labels != -100).sum(1) >= 1).all()


def test_packed_pairs_score_like_tokenized_pairs():
    """pack_pairs leaves padding mid-row; the model must see the same thing as encode_pairs."""
    torch.manual_seed(0)
    config = preset("tiny")
    model, tok = HCMRM(config).eval(), Tokenizer.from_config(config)
    queries, texts = ["手机壳", "跑步鞋男款夏季"], ["苹果手机壳防摔", "鞋"]
    q, t = tok.encode_texts(queries, config.max_query_len), tok.encode_texts(texts, config.max_text_len)
    packed = pack_pairs(q["input_ids"], q["attention_mask"], t["input_ids"], t["attention_mask"])
    direct = tok.encode_pairs(queries, texts)
    video = model.empty_video(2)
    a = model.relevance(**packed, video=video).logits
    b = model.relevance(**direct, video=video).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_all_terms_are_computed_and_finite():
    torch.manual_seed(0)
    config = preset("tiny")
    out = Pretrainer(HCMRM(config))(batch_for(config), generator=torch.Generator().manual_seed(0))
    for term in TERMS:
        value = getattr(out, term)
        assert torch.isfinite(value) and value.item() > 0, term
    expected = out.itc + out.itm + out.mlm + out.pqvm
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_text_only_batch_has_no_itc_or_itm():
    torch.manual_seed(0)
    config = preset("tiny")
    items = [PretrainExample(e.pseudo_query, e.context_text, None) for e in examples()]
    out = Pretrainer(HCMRM(config))(batch_for(config, items))
    assert out.itc.item() == 0 and out.itm.item() == 0
    assert out.mlm.item() > 0 and out.pqvm.item() > 0
    out.loss.backward()  # MLM and PQVM still train the model


def test_pqvm_weight_zero_is_albef():
    torch.manual_seed(0)
    config = preset("tiny")
    out = Pretrainer(HCMRM(config), LossWeights(pqvm=0.0))(batch_for(config))
    assert out.pqvm.item() == 0
    assert out.loss.item() == pytest.approx((out.itc + out.itm + out.mlm).item(), rel=1e-6)


@pytest.mark.parametrize("term", TERMS)
def test_one_step_lowers_each_loss(term):
    torch.manual_seed(0)
    config = preset("tiny")
    pretrainer = Pretrainer(HCMRM(config), LossWeights(**{t: float(t == term) for t in TERMS}))
    batch = batch_for(config)
    opt = torch.optim.AdamW(pretrainer.parameters(), lr=1e-4)  # Adam's first step moves every weight by ~lr
    before = pretrainer(batch, generator=torch.Generator().manual_seed(0))
    before.loss.backward()
    opt.step()
    with torch.no_grad():
        after = pretrainer(batch, generator=torch.Generator().manual_seed(0))
    assert getattr(after, term).item() < getattr(before, term).item()


def test_identical_items_under_bf16_never_fail():
    """A batch of copies of one item: hard-negative sampling must still draw (uniformly), under bf16."""
    torch.manual_seed(0)
    config = preset("tiny")
    item = examples()[0]
    batch = batch_for(config, [item] * 6)
    pretrainer = Pretrainer(HCMRM(config))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pretrainer(batch)
    for term in TERMS:
        assert torch.isfinite(getattr(out, term)), term
    out.loss.backward()


def test_momentum_and_queue():
    torch.manual_seed(0)
    config = preset("tiny", use_momentum=True, queue_size=8)
    pretrainer = Pretrainer(HCMRM(config))
    batch = batch_for(config)
    opt = torch.optim.AdamW(pretrainer.parameters(), lr=1e-3)
    for step in range(3):
        out = pretrainer(batch, generator=torch.Generator().manual_seed(step))
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert int(pretrainer.queue.filled) == 8  # 3 batches x 6 items with frames, ring of 8
    assert not pretrainer.momentum.model.training  # momentum features are dropout-free targets
    assert all(not p.requires_grad for p in pretrainer.momentum.model.parameters())
    moved = [(a - b).abs().max().item() for a, b in
             zip(pretrainer.model.parameters(), pretrainer.momentum.model.parameters())]
    assert max(moved) > 0  # the EMA copy trails the model


def test_feature_queue_is_a_ring():
    from hcmrm.train.momentum import FeatureQueue

    queue = FeatureQueue(size=4, dim=2)
    assert queue.features()[0].shape == (0, 2)
    queue.push(torch.ones(3, 2), torch.ones(3, 2))
    queue.push(torch.full((2, 2), 2.0), torch.full((2, 2), 2.0))
    vision, _ = queue.features()
    assert vision[:, 0].tolist() == [2.0, 1.0, 1.0, 2.0]  # the 5th row overwrote the 1st
    assert int(queue.ptr) == 1 and int(queue.filled) == 4


def test_momentum_copy_starts_from_the_weights_at_the_first_update():
    """A loop that builds the pre-trainer, then loads a checkpoint into the model, gets an EMA of the loaded model."""
    from hcmrm.train.momentum import Momentum

    torch.manual_seed(0)
    model = HCMRM(preset("tiny"))
    momentum = Momentum(model, decay=0.9)
    with torch.no_grad():
        model.relevance_head.bias.fill_(5.0)  # "resumed" weights
    momentum.update(model)
    assert torch.equal(momentum.model.relevance_head.bias, model.relevance_head.bias)
    with torch.no_grad():
        model.relevance_head.bias.fill_(15.0)
    momentum.update(model)
    assert torch.allclose(momentum.model.relevance_head.bias, torch.full((3,), 6.0))  # 0.9 * 5 + 0.1 * 15
