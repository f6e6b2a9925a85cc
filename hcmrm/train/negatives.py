"""Hard negatives: for item i, another in-batch item j drawn with probability softmax(similarity[i])_j, j != i.

ALBEF's version (softmax in the autocast dtype, then zeroing the diagonal) crashed with "invalid
multinomial distribution" under mixed precision. Here the softmax is fp32 with -inf on the diagonal, and a
row that still is not a distribution (non-finite similarities, a fully masked row) falls back to uniform
over the other items. A batch of identical items is therefore a uniform draw, never an error.
"""

from __future__ import annotations

import torch


def similarity(a: torch.Tensor, b: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """[N, D] x [M, D] unit vectors -> [N, M] fp32 similarities / temperature, outside any autocast."""
    with torch.autocast(a.device.type, enabled=False):
        return a.float() @ b.float().T / torch.as_tensor(temperature, device=a.device).float()


def hard_negative_weights(sim: torch.Tensor) -> torch.Tensor:
    """[N, N] similarities -> [N, N] fp32 sampling weights, rows summing to 1, zero on the diagonal."""
    n = sim.shape[0]
    if sim.dim() != 2 or sim.shape[1] != n:
        raise ValueError(f"hard negatives need a square [N, N] similarity, got {tuple(sim.shape)}")
    if n < 2:
        raise ValueError("hard negatives need at least 2 items in the batch")
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    logits = sim.detach().float().nan_to_num(nan=0.0, posinf=1e4, neginf=-1e4)  # finite, then mask
    logits = logits.masked_fill(~off_diagonal, float("-inf"))
    weights = torch.softmax(logits, dim=1)
    broken = ~torch.isfinite(weights).all(dim=1) | (weights.sum(dim=1) <= 0)
    uniform = off_diagonal.float() / (n - 1)
    return torch.where(broken[:, None], uniform, weights)


def sample_hard_negatives(sim: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """[N, N] similarity (row i's positive is column i) -> [N] long: one negative column per row, never i."""
    weights = hard_negative_weights(sim)
    device = weights.device
    if generator is not None and generator.device != device:
        weights = weights.to(generator.device)  # a CPU generator samples on the CPU: same draws on any device
    index = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return index.to(device)
