"""Hierarchical softmax: a proper distribution over the 4 grades, loss = -log p_label = sum of path BCEs."""

import pytest
import torch
import torch.nn.functional as F

from hcmrm.model.losses import bce_loss, bce_probs, expected_grade, hierarchical_probs, hierarchical_softmax_loss


def test_probabilities_sum_to_one_and_follow_the_tree():
    logits = torch.randn(64, 3) * 4
    p = hierarchical_probs(logits)
    assert torch.allclose(p.sum(1), torch.ones(64), atol=1e-6)
    r, g, b = torch.sigmoid(logits).unbind(1)
    expected = torch.stack([(1 - r) * (1 - b), (1 - r) * b, r * (1 - g), r * g], dim=1)
    assert torch.allclose(p, expected, atol=1e-6)


@pytest.mark.parametrize("label", [0, 1, 2, 3])
def test_loss_is_minus_log_p_label_and_the_sum_of_path_bces(label):
    logits = torch.randn(16, 3)
    labels = torch.full((16,), label)
    loss = hierarchical_softmax_loss(logits, labels)
    assert loss.item() == pytest.approx(-hierarchical_probs(logits)[:, label].log().mean().item(), rel=1e-5)
    r, g, b = logits.unbind(1)
    bce = F.binary_cross_entropy_with_logits
    positive = torch.full((16,), float(label >= 2))
    second = (g, torch.full((16,), float(label == 3))) if label >= 2 else (b, torch.full((16,), float(label == 1)))
    path = bce(r, positive, reduction="none") + bce(*second, reduction="none")
    assert loss.item() == pytest.approx(path.mean().item(), rel=1e-5)


def test_extreme_bf16_logits_stay_finite():
    logits = torch.tensor([[80.0, -80.0, 80.0], [-80.0, 80.0, -80.0]], dtype=torch.bfloat16)
    p = hierarchical_probs(logits)
    assert p.dtype == torch.float32 and torch.isfinite(p).all()
    assert torch.isfinite(hierarchical_softmax_loss(logits, torch.tensor([0, 3]))).all()


def test_score_is_the_expected_grade():
    p = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0], [0.1, 0.2, 0.3, 0.4]])
    assert expected_grade(p).tolist() == pytest.approx([0.0, 3.0, 0.2 + 0.6 + 1.2])


def test_bce_baseline_positive_is_good_or_better():
    logits = torch.tensor([[2.0], [-1.0], [0.5], [0.0]])
    labels = torch.tensor([3, 1, 2, 0])
    expected = F.binary_cross_entropy_with_logits(logits.view(-1), torch.tensor([1.0, 0, 1, 0]))
    assert bce_loss(logits, labels).item() == pytest.approx(expected.item())
    p = bce_probs(logits)
    assert torch.allclose(p.sum(1), torch.ones(4)) and torch.allclose(p[:, 2], torch.sigmoid(logits.view(-1)))


def test_labels_outside_the_grades_are_refused():
    with pytest.raises(ValueError, match="0..3"):
        hierarchical_softmax_loss(torch.zeros(2, 3), torch.tensor([0, 4]))
