"""Relevance heads' probabilities and losses over the grades Bad < Less < Good < Excellent (0..3).

Hierarchical softmax (DESIGN.md section 3): three binary classifiers on a two-level tree,
  r = P(Good or Excellent), g = P(Excellent | positive), b = P(Less | negative),
  p0 = (1-r)(1-b), p1 = (1-r)b, p2 = r(1-g), p3 = r g,  loss = -log p_label,
which is the sum of the binary cross-entropies on the label's path. Logits come in the order (r, g, b).
The BCE baseline has one logit, positive = label >= 2 (hcmrm.labels.POSITIVE_LABEL); its probabilities
put 1-p on Bad and p on Good. The scale itself (names, thresholds, score weights) is hcmrm/labels.py.
Everything is computed in fp32 from log-sigmoids, so it stays finite under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hcmrm.labels import GRADE_NAMES, LABEL_RANGE, POSITIVE_LABEL, SCORE_WEIGHTS, is_label


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    labels = labels.long().view(-1)
    if labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if not (is_label(low) and is_label(high)):
            raise ValueError(f"labels must be grades {LABEL_RANGE}, got values in [{low}, {high}]")
    return labels


def hierarchical_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """[B, 3] logits (r, g, b) -> [B, 4] log p0..p3."""
    if logits.dim() != 2 or logits.shape[1] != 3:
        raise ValueError(f"hierarchical logits must be [B, 3] (r, g, b), got {tuple(logits.shape)}")
    r, g, b = logits.float().unbind(dim=1)
    log_pos, log_neg = F.logsigmoid(r), F.logsigmoid(-r)
    return torch.stack(
        [log_neg + F.logsigmoid(-b), log_neg + F.logsigmoid(b), log_pos + F.logsigmoid(-g), log_pos + F.logsigmoid(g)],
        dim=1,
    )


def hierarchical_probs(logits: torch.Tensor) -> torch.Tensor:
    """[B, 3] logits (r, g, b) -> [B, 4] p_bad, p_less, p_good, p_excellent (rows sum to 1)."""
    return hierarchical_log_probs(logits).exp()


def hierarchical_softmax_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -log p_label."""
    labels = _check_labels(labels)
    return -hierarchical_log_probs(logits).gather(1, labels[:, None]).mean()


def bce_probs(logits: torch.Tensor) -> torch.Tensor:
    """[B, 1] logit -> [B, 4]: 1-p on Bad, p on the lowest relevant grade (Good), so the score is 2p."""
    p = torch.sigmoid(logits.float().view(-1))
    columns = [torch.zeros_like(p)] * len(GRADE_NAMES)
    columns[0], columns[POSITIVE_LABEL] = 1 - p, p
    return torch.stack(columns, dim=1)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with positive = label >= POSITIVE_LABEL (Good or Excellent)."""
    labels = _check_labels(labels)
    return F.binary_cross_entropy_with_logits(logits.float().view(-1), (labels >= POSITIVE_LABEL).float())


def relevance_probs(logits: torch.Tensor, head: str) -> torch.Tensor:
    return hierarchical_probs(logits) if head == "hierarchical" else bce_probs(logits)


def relevance_loss(logits: torch.Tensor, labels: torch.Tensor, head: str) -> torch.Tensor:
    return hierarchical_softmax_loss(logits, labels) if head == "hierarchical" else bce_loss(logits, labels)


def expected_grade(probs: torch.Tensor) -> torch.Tensor:
    """score = p1 + 2 p2 + 3 p3, in [0, 3]."""
    return probs @ torch.tensor(SCORE_WEIGHTS, dtype=probs.dtype, device=probs.device)
