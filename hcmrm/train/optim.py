"""AdamW with linear warm-up then cosine decay, the schedule both training loops share.

Biases, LayerNorm weights and embeddings get no weight decay (BERT's recipe). The schedule is
a pure function of the step, so a resumed run only needs the step count to be exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.01  # decoupled (AdamW) decay for matrices; none for biases, norms, embeddings
    betas: tuple[float, float] = (0.9, 0.999)  # Adam moment decay rates
    eps: float = 1e-8  # Adam denominator guard
    warmup_steps: int = 100  # linear ramp from 0 to lr
    min_lr_ratio: float = 0.0  # the cosine ends at lr * min_lr_ratio
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables it
    pretrained_lr: float = 0.0  # peak lr of the tensors from a pretrained base and their adapters (0 = lr)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """The learning-rate multiplier at `step` (0-based): linear warm-up, then half a cosine to min_ratio."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or "norm" in name.lower() or "embedding" in name.lower()


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: decay / no decay, and, for a model on a pretrained base
    (`model.pretrained_parameter_names()`), the base's part at config.pretrained_lr, the new layers at lr."""
    pretrained = model.pretrained_parameter_names() if hasattr(model, "pretrained_parameter_names") else set()
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name in pretrained, _no_decay(name, param)), []).append(param)
    base_lr = config.pretrained_lr or config.lr
    return torch.optim.AdamW(
        [{"params": params, "weight_decay": 0.0 if no_decay else config.weight_decay,
          "lr": base_lr if from_base else config.lr}
         for (from_base, no_decay), params in sorted(groups.items())],
        lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int):
    """A LambdaLR over warmup_cosine; its state is plain numbers (checkpointed as JSON)."""

    def multiplier(step: int) -> float:
        return warmup_cosine(step, config.warmup_steps, total_steps, config.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip in place; returns the pre-clip global norm (logged: a spike there explains a loss spike)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm and max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params])))
