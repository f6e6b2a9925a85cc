"""Hard-negative sampling never picks the positive and never fails, whatever the similarities."""

import pytest
import torch

from hcmrm.train.negatives import hard_negative_weights, sample_hard_negatives


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_identical_items_give_a_uniform_draw(dtype):
    sim = torch.full((8, 8), 14.3, dtype=dtype)  # a batch of identical items: every similarity equal
    weights = hard_negative_weights(sim)
    assert torch.allclose(weights, (1 - torch.eye(8)) / 7)
    for seed in range(20):
        index = sample_hard_negatives(sim, torch.Generator().manual_seed(seed))
        assert (index != torch.arange(8)).all()


@pytest.mark.parametrize("value", [1e4, -1e4, float("inf"), float("-inf"), float("nan")])
def test_extreme_similarities_still_sample(value):
    sim = torch.randn(5, 5)
    sim[0, :] = value
    sim[:, 2] = value
    sim = sim.to(torch.bfloat16)
    weights = hard_negative_weights(sim)
    assert torch.isfinite(weights).all() and torch.allclose(weights.sum(1), torch.ones(5))
    assert (weights.diagonal() == 0).all()
    assert (sample_hard_negatives(sim) != torch.arange(5)).all()


def test_harder_negatives_are_drawn_more_often():
    sim = torch.tensor([[10.0, 9.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
    draws = torch.stack([sample_hard_negatives(sim, torch.Generator().manual_seed(s)) for s in range(50)])
    assert (draws[:, 0] == 1).float().mean() > 0.9  # item 1 is the most similar to item 0


def test_two_items_swap_and_one_item_is_an_error():
    assert sample_hard_negatives(torch.zeros(2, 2)).tolist() == [1, 0]
    with pytest.raises(ValueError, match="at least 2"):
        sample_hard_negatives(torch.zeros(1, 1))
