"""The relevance head, and the pre-training heads on top of the encoders (one checkpoint holds everything).

Relevance: a linear layer on the fused CLS: 3 logits (r, g, b) for the hierarchical softmax, 1 for BCE.
Its first logit r is the relevant-vs-irrelevant one, P(label >= 2) = sigmoid(r); it is divided by the
config's `relevance_temperature` (temperature scaling, fitted after training by `hcmrm calibrate`),
so the rates built on P(label >= 2) can be calibrated without retraining. 1.0 leaves the logits as trained.

ITC: projections of the vision CLS and the text CLS to embed_dim, and a learned temperature.
ITM: 2-way classifier on the fused CLS (ALBEF). PQVM: 1 logit on the fused CLS (binary cross-entropy).
MLM: BERT's prediction head, its decoder tied to the word embeddings.
The ALBEF momentum pieces used only while pre-training live in hcmrm/train/momentum.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hcmrm.model.config import HCMRMConfig


class RelevanceHead(nn.Linear):
    """nn.Linear(hidden, 3 or 1) whose first logit is divided by the relevance temperature.

    A subclass of nn.Linear, so its parameters keep the names `relevance_head.weight/bias` of every
    checkpoint written before. The temperature is a config field, not a parameter: training never moves it.
    """

    def __init__(self, config: HCMRMConfig):
        super().__init__(config.text.hidden, 3 if config.head == "hierarchical" else 1)
        self.temperature = float(config.relevance_temperature)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        logits = super().forward(cls)
        if self.temperature == 1.0:  # as trained, bit for bit
            return logits
        return torch.cat([logits[:, :1] / self.temperature, logits[:, 1:]], dim=1)


class MLMHead(nn.Module):
    """BERT's cls.predictions: dense + GELU + LayerNorm, then the word embeddings transposed + a bias."""

    def __init__(self, config: HCMRMConfig):
        super().__init__()
        t = config.text
        self.dense = nn.Linear(t.hidden, t.hidden)
        self.norm = nn.LayerNorm(t.hidden, eps=t.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(t.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(hidden))), word_embeddings, self.bias)


class PretrainHeads(nn.Module):
    def __init__(self, config: HCMRMConfig):
        super().__init__()
        self.vision_proj = nn.Linear(config.vision.width, config.embed_dim)
        self.text_proj = nn.Linear(config.text.hidden, config.embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(config.temperature)))
        self.itm = nn.Linear(config.text.hidden, 2)
        self.pqvm = nn.Linear(config.text.hidden, 1)
        self.mlm = MLMHead(config)

    def temperature(self) -> torch.Tensor:
        return self.temp.clamp(0.001, 0.5)

    def vision_feature(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, vision width] pooled frame CLS -> [B, embed_dim], unit norm."""
        return F.normalize(self.vision_proj(pooled).float(), dim=-1)

    def text_feature(self, cls: torch.Tensor) -> torch.Tensor:
        """[B, hidden] text-encoder CLS -> [B, embed_dim], unit norm."""
        return F.normalize(self.text_proj(cls).float(), dim=-1)
