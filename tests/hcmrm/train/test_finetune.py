"""The fine-tuning loop on the tiny preset: the loss goes down, dev metrics every epoch, --init, BCE."""

import numpy as np
import pytest
import torch

from hcmrm.train.batching import LabeledExample
from hcmrm.model.checkpoint import load_model, save_model
from hcmrm.config import from_dict
from hcmrm.train.finetune import FinetuneConfig, evaluate, finetune, initial_model
from hcmrm.train import finetune as finetune_module
from hcmrm.model.network import build_model
from hcmrm.model.tokenizer import Tokenizer
from hcmrm.scoring import Scorer
from hcmrm.train.metrics import relevance_metrics

# Relevant pairs share the product word; irrelevant ones do not. Labels 0..3.
PRODUCTS = ["手机壳", "耳机", "跑鞋", "茶叶", "口红", "键盘"]


def pairs():
    out = []
    for i, product in enumerate(PRODUCTS):
        other = PRODUCTS[(i + 1) % len(PRODUCTS)]
        out += [
            LabeledExample(product, f"新款{product} 正品包邮", None, 3),
            LabeledExample(f"{product}推荐", f"{product}怎么选", None, 2),
            LabeledExample(product, f"{other}配件", None, 1),
            LabeledExample(product, f"{other} 特价", None, 0),
        ]
    return out


def engine(model) -> Scorer:
    """The production scoring engine around `model` (what evaluation runs)."""
    return Scorer(model, Tokenizer.from_config(model.config))


def config(**overrides):
    loop = {"epochs": 12, "batch_size": 8, "log_every": 1, "optim": {"lr": 3e-3, "warmup_steps": 3}}
    return from_dict(FinetuneConfig, {"preset": "tiny", "loop": loop, "eval_batch_size": 7, **overrides})


def test_loss_goes_down_and_each_epoch_is_evaluated(tmp_path):
    data = pairs()
    result = finetune(data, data, config(), tmp_path, progress=False)
    losses = result.loop.losses
    assert len(losses) == 12 * 3  # 24 pairs / batch 8 = 3 steps an epoch
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6])
    assert [h["epoch"] for h in result.history] == list(range(12))
    assert set(result.metrics) == {"auc", "spearman", "accuracy", "ndcg", "n", "ece", "brier"} and result.metrics["n"] == 24
    assert result.metrics["auc"] > 0.9 and result.metrics == {k: v for k, v in result.history[-1].items() if k not in ("epoch", "step")}
    # The saved model, scored by the production engine, gives the metrics the loop recorded.
    saved = evaluate(load_model(result.model_dir), data, batch_size=5).as_dict()
    assert saved == pytest.approx(result.metrics, abs=1e-6)


def test_evaluation_is_the_scoring_engines_output_and_leaves_a_training_model_training():
    torch.manual_seed(0)
    model = build_model("tiny").train()
    data = pairs()
    metrics = evaluate(model, data, batch_size=5)
    assert model.training  # the loop's model trains on after each epoch's evaluation
    probs, scores = engine(model).score_pairs([e.query for e in data], [e.text for e in data])
    expected = relevance_metrics([e.label for e in data], scores, probs[:, 2] + probs[:, 3], [e.query for e in data])
    assert metrics.as_dict() == pytest.approx(expected.as_dict(), abs=1e-6)


def test_scoring_in_blocks_reports_progress_and_gives_the_same_probabilities(monkeypatch):
    torch.manual_seed(0)
    model, data = build_model("tiny"), pairs()[:5]
    whole, _ = finetune_module.score_examples(model, data)
    monkeypatch.setattr(finetune_module, "PROGRESS_BLOCK", 2)
    done = []
    blocks, _ = finetune_module.score_examples(model, data, progress=done.append)
    assert done == [2, 4, 5]  # pairs scored so far, after each block
    np.testing.assert_allclose(blocks, whole, atol=1e-6)


def test_init_from_a_pretrained_folder_keeps_the_encoders_and_swaps_the_head(tmp_path):
    torch.manual_seed(3)
    pretrained = build_model("tiny")
    save_model(pretrained, tmp_path / "pt")
    model = initial_model(config(loss="bce"), tmp_path / "pt")
    assert model.config.head == "bce" and model.relevance_head.out_features == 1
    assert torch.equal(model.embeddings.word.weight, pretrained.embeddings.word.weight)
    same_head = initial_model(config(), tmp_path / "pt")
    assert torch.equal(same_head.relevance_head.weight, pretrained.relevance_head.weight)
    with pytest.raises(FileNotFoundError, match="no model folder"):
        initial_model(config(), tmp_path / "nowhere")


def test_bce_baseline_trains_and_scores_two_grades(tmp_path):
    data = pairs()
    result = finetune(data, data, config(loss="bce"), None, progress=False)
    probs, _ = engine(result.model).score_pairs([e.query for e in data], [e.text for e in data])
    assert np.allclose(probs[:, 1], 0) and np.allclose(probs[:, 3], 0)  # BCE only knows bad / good
    assert result.metrics["auc"] > 0.8


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        FinetuneConfig(loss="softmax")
