"""Multi-process training with torch.distributed: torchrun, Spark's TorchDistributor, or a spawn.

Every launcher sets the same environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
so the training code only asks `from_env()` who it is. Each process builds its slice of every global
batch; DistributedDataParallel averages the gradients, so N processes take the same optimizer step as
one process with the whole batch (exactly, for losses that are means over independent examples;
in-batch contrastive losses see only their process's slice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # this process, 0..world_size-1
    world_size: int = 1  # processes training together
    local_rank: int = 0  # this process on its machine (picks the GPU there)

    @property
    def is_main(self) -> bool:
        """The process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def from_env() -> DistInfo:
    """Who this process is, from the variables torchrun and TorchDistributor set (1 process without them)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


DEVICES = ("auto", "cpu", "cuda")


def pick_device(choice: str = "auto", info: DistInfo | None = None) -> torch.device:
    """The device this process trains on: `cuda:LOCAL_RANK` when CUDA is there (auto) or asked for (cuda),
    the CPU otherwise. A launcher that gives each process its own GPU through CUDA_VISIBLE_DEVICES (Spark's
    TorchDistributor on a cluster) sets LOCAL_RANK to 0 there, so the index stays right."""
    if choice not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {choice!r}")
    info = info or from_env()
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda, but torch sees no CUDA device here: use --device auto or cpu")
    if info.local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", info.local_rank)


def init(device: torch.device | None = None, timeout_s: int = 1800) -> DistInfo:
    """Join the process group when launched as several processes (NCCL for CUDA devices, gloo for the CPU);
    a no-op for one process."""
    import datetime

    info = from_env()
    if info.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"
        torch.distributed.init_process_group(
            backend, rank=info.rank, world_size=info.world_size, timeout=datetime.timedelta(seconds=timeout_s)
        )
    return info


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap_model(module: nn.Module, info: DistInfo, device: torch.device | None = None) -> nn.Module:
    """DDP around `module` (already on `device`) when several processes train; the module itself otherwise.

    find_unused_parameters: fine-tuning never touches the pre-training heads (nor the vision tower
    for text-only batches), so some parameters get no gradient on a given step.
    """
    if not info.enabled:
        return module
    if not torch.distributed.is_initialized():
        raise RuntimeError(f"WORLD_SIZE={info.world_size} but no process group: call hcmrm.train.distributed.init() first")
    on_gpu = device is not None and torch.device(device).type == "cuda"
    return nn.parallel.DistributedDataParallel(module, device_ids=[torch.device(device).index] if on_gpu else None,
                                               find_unused_parameters=True)
