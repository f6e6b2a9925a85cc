"""The learning-rate schedule (warm-up, cosine) and AdamW's parameter groups."""

import pytest
import torch
from torch import nn

from hcmrm.train.optim import OptimConfig, build_optimizer, build_scheduler, warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    values = [warmup_cosine(s, warmup_steps=4, total_steps=14, min_ratio=0.1) for s in range(16)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4] == pytest.approx(1.0)
    assert values[9] == pytest.approx(0.55)  # half-way down the cosine
    assert values[14] == pytest.approx(0.1) and values[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[4:], values[5:]))


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = nn.ModuleDict({"embedding": nn.Embedding(10, 4), "proj": nn.Linear(4, 4), "norm": nn.LayerNorm(4)})
    optimizer = build_optimizer(model, OptimConfig(weight_decay=0.05))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4


def test_scheduler_sets_the_learning_rate_per_step():
    model = nn.Linear(2, 2)
    config = OptimConfig(lr=1.0, warmup_steps=2)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps=4)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5, 1.0, 1.0, 0.5])


def test_a_model_on_a_pretrained_base_trains_its_base_part_at_pretrained_lr():
    from hcmrm.model.config import preset
    from hcmrm.model.network import HCMRM

    model = HCMRM(preset("tiny", text={"base": "e5-small", "lora_rank": 2}))  # shapes only: nothing is loaded
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3, pretrained_lr=1e-4))
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["text_layers.0.attention.query.lora_a"])] == 1e-4
    assert lr_of[id(named["fusion_layers.0.mlp.norm.weight"])] == 1e-4
    assert lr_of[id(named["fusion_layers.0.cross_attention.query.weight"])] == 1e-3  # new layers
    assert lr_of[id(named["relevance_head.r.weight"] if "relevance_head.r.weight" in named else
                    next(p for n, p in named.items() if n.startswith("relevance_head.")))] == 1e-3
    assert id(named["text_layers.0.attention.query.weight"]) not in lr_of  # frozen under its adapter
