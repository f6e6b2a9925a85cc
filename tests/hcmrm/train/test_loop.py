"""The step loop's own records: what it logs per step, and what a CPU run does not pay for."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from hcmrm.train.batching import TensorBatch
from hcmrm.train.loop import IndexedBatches, LoopConfig, run_loop
from hcmrm.train.optim import OptimConfig


@dataclass
class Points(TensorBatch):
    x: torch.Tensor  # [B, 2]
    y: torch.Tensor  # [B]


class LineFit(nn.Module):
    """The smallest step module: a least-squares line through the batch."""

    def __init__(self):
        super().__init__()
        self.line = nn.Linear(2, 1)

    def forward(self, batch: Points, generator=None) -> dict[str, torch.Tensor]:
        return {"loss": ((self.line(batch.x).squeeze(1) - batch.y) ** 2).mean()}


def train_line(steps: int, device: str = "cpu") -> list[tuple[int, dict]]:
    """Train LineFit for `steps` steps of 4 points on `device`, logging every step; returns what was logged."""
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    points = Points(x, x @ torch.tensor([2.0, -1.0]))
    module, logged = LineFit(), []
    source = IndexedBatches(16, lambda idx, _: Points(points.x[list(idx)], points.y[list(idx)]), batch_size=4, seed=0)
    run_loop(module, module, source, LoopConfig(max_steps=steps, batch_size=4, log_every=1, optim=OptimConfig(lr=0.1)),
             log_metrics=lambda metrics, step: logged.append((step, metrics)), progress=False, device=device)
    return logged


def test_each_step_logs_its_time_on_the_cpu_without_touching_cuda(monkeypatch):
    def no_cuda(*args):
        raise AssertionError("a CPU run synchronised CUDA")

    monkeypatch.setattr(torch.cuda, "synchronize", no_cuda)
    logged = train_line(3)
    assert [step for step, _ in logged] == [1, 2, 3]
    for _, metrics in logged:
        assert 0 < metrics["train/step_s"] < 60
        assert 0 <= metrics["train/data_wait_s"] <= metrics["train/step_s"]  # the wait is part of the step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_each_step_time_waits_for_the_steps_kernels(monkeypatch):
    calls = []
    synchronize = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(a) or synchronize(*a))
    logged = train_line(3, "cuda")
    assert len(calls) >= 3 and all(metrics["train/step_s"] > 0 for _, metrics in logged)
