"""The relevance head's temperature: it divides the relevant-vs-irrelevant logit only, 1.0 changes nothing."""

import pytest
import torch

from hcmrm.model.checkpoint import load_model, save_model
from hcmrm.model.config import preset
from hcmrm.model.network import build_model


def pairs(batch: int = 5):
    """Random token ids of `batch` text-only pairs, all positions real."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(200, 3000, (batch, 12), generator=g)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


def relevance(model, batch=5):
    model.eval()
    ids, mask, types = pairs(batch)
    with torch.no_grad():
        return model.relevance(ids, mask, types, model.empty_video(batch))


@pytest.mark.parametrize("head", ["hierarchical", "bce"])
def test_the_temperature_divides_the_first_logit_only(head):
    torch.manual_seed(0)
    plain = build_model(preset("tiny", head=head))
    torch.manual_seed(0)
    warm = build_model(preset("tiny", head=head, relevance_temperature=2.5))
    assert set(plain.state_dict()) == set(warm.state_dict())  # a config field, not a weight
    before, after = relevance(plain), relevance(warm)
    torch.testing.assert_close(after.logits[:, 0], before.logits[:, 0] / 2.5)
    torch.testing.assert_close(after.logits[:, 1:], before.logits[:, 1:])
    # P(label >= 2) = sigmoid(r / T): closer to 1/2, in the same order
    p_before, p_after = before.probs[:, 2:].sum(1), after.probs[:, 2:].sum(1)
    torch.testing.assert_close(p_after, torch.sigmoid(before.logits[:, 0] / 2.5))
    assert ((p_after - 0.5).abs() < (p_before - 0.5).abs()).all()
    assert torch.equal(p_after.argsort(), p_before.argsort())


def test_a_saved_temperature_comes_back_and_the_default_leaves_old_checkpoints_as_they_were(tmp_path):
    torch.manual_seed(0)
    model = build_model(preset("tiny", relevance_temperature=0.5))
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.relevance_temperature == 0.5 == loaded.relevance_head.temperature
    torch.testing.assert_close(relevance(loaded).probs, relevance(model).probs)
    assert preset("tiny").relevance_temperature == 1.0


def test_a_temperature_must_be_positive():
    with pytest.raises(ValueError, match="relevance_temperature must be > 0"):
        preset("tiny", relevance_temperature=0.0)
