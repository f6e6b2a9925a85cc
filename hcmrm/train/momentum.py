"""ALBEF's momentum pieces for ITC: `Momentum` (an EMA copy of the model) and `FeatureQueue` (its past features).

The pre-trainer uses them when config.use_momentum is on (off in `tiny`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


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
