"""Pre-training heads on top of the encoders (they live in HCMRM so one checkpoint holds everything).

ITC: projections of the vision CLS and the text CLS to embed_dim, and a learned temperature.
ITM: 2-way classifier on the fused CLS (ALBEF). PQVM: 1 logit on the fused CLS (binary cross-entropy).
MLM: BERT's prediction head, its decoder tied to the word embeddings.
For ITC, `Momentum` (an EMA copy of the model) and `FeatureQueue` (its past features) are the ALBEF
pieces; the pre-trainer uses them when config.use_momentum is on (off in `tiny`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hcmrm.config import HCMRMConfig


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


class FeatureQueue(nn.Module):
    """A ring buffer of past momentum features: extra ITC negatives beyond the batch (ALBEF/MoCo)."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("vision", torch.zeros(size, dim))
        self.register_buffer("text", torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next row to write
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))  # rows holding real features

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = int(self.filled)
        return self.vision[:n], self.text[:n]

    @torch.no_grad()
    def push(self, vision: torch.Tensor, text: torch.Tensor) -> None:
        size = self.vision.shape[0]
        vision, text = vision[-size:], text[-size:]  # a batch larger than the queue keeps its last rows
        rows = (self.ptr + torch.arange(len(vision), device=self.ptr.device)) % size
        self.vision[rows] = vision.to(self.vision.dtype)
        self.text[rows] = text.to(self.text.dtype)
        self.ptr.copy_((self.ptr + len(vision)) % size)
        self.filled.copy_((self.filled + len(vision)).clamp(max=size))


class Momentum(nn.Module):
    """An exponential moving average copy of the model; its ITC features are soft targets and queue entries.

    The copy starts from the model's weights at the first update, not at construction, so a loop that builds
    the pre-trainer and then resumes the model from a checkpoint still starts its EMA from the resumed weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.register_buffer("synced", torch.zeros((), dtype=torch.bool))  # False until the first update

    def train(self, mode: bool = True) -> "Momentum":
        return self  # always eval: its features are targets, without dropout noise

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        device = next(model.parameters()).device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
            self.synced = self.synced.to(device)
        weight = 1.0 - self.decay if bool(self.synced) else 1.0  # the first update copies the model
        for p_m, p in zip(self.model.parameters(), model.parameters()):
            p_m.lerp_(p.detach(), weight)
        self.synced.fill_(True)
