"""The training state, saved and resumed exactly, and the plain step loop both trainings share.

A checkpoint is a folder `step-00000123/` holding
  model.safetensors + config.json   the model (`hcmrm.model.checkpoint.save_model`: loadable as a model)
  optimizer.safetensors             AdamW's moment tensors
  rng.safetensors                   torch's global RNG and the batch generator's state
  extra.safetensors                 any other state of the step module (e.g. a momentum model, a queue)
  train_state.json                  step, position in the epoch, scheduler, optimizer hyper-parameters,
                                    Python/NumPy RNG states, the loop config
Tensors go to safetensors and everything else to JSON: nothing is pickled, so loading a checkpoint
never executes code. The folder is written under a temporary name, renamed into place, and only
then named by the `latest` file, so a crash leaves the previous checkpoint as the one to resume.

The batches come from a `BatchSource`: `IndexedBatches` over examples in memory, or
`hcmrm.train.shards.ShardBatches` streaming a corpus from its files. Either derives an epoch's batches
from (seed, epoch) alone and can start at any batch of it.

Exact resume: the data order is a pure function of (seed, epoch), the learning rate of the step
count, and every random number generator in play is restored, so step k+1 after a resume computes
the same loss and the same update as step k+1 of an uninterrupted run (CPU; single process).

On CUDA the step module (model, momentum model, queues) lives on the device, each batch is moved there
without blocking (from pinned memory when the source pins it), and the forward pass runs under bf16
autocast while the weights and the optimizer stay float32.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hcmrm.config import to_dict
from hcmrm.train.distributed import DistInfo, wrap_model
from hcmrm.train.optim import OptimConfig, build_optimizer, build_scheduler, clip_gradients

log = logging.getLogger(__name__)

FORMAT = "hcmrm-train-state/1"
LATEST = "latest"
STATE_JSON = "train_state.json"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
EXTRA = "extra.safetensors"


@dataclass
class LoopConfig:
    epochs: int = 1  # passes over the data (the last incomplete batch of each is dropped)
    batch_size: int = 32  # examples per optimizer step, summed over all processes
    max_steps: int = 0  # stop after this many steps (0 = epochs x batches per epoch); sets the schedule length
    seed: int = 0  # data order, batch randomness (masking, negatives), dropout
    log_every: int = 10  # steps between logged (averaged) losses
    checkpoint_every: int = 0  # steps between checkpoints (0 = only at the end of each epoch)
    keep_checkpoints: int = 2  # checkpoint folders kept (the newest)
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW + schedule


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch done


# --- checkpoint files ---------------------------------------------------------------------------


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_state(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict]:
    py = random.getstate()
    np_state = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "batch_generator": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on the GPU draws from it
        tensors["cuda"] = torch.cuda.get_rng_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["torch"])
    generator.set_state(tensors["batch_generator"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _extra_state(step_module: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    """The step module's state that is not the model's (a momentum model, a queue)."""
    model_ids = {id(t) for t in model.state_dict(keep_vars=True).values()}
    return {
        k: v.detach().contiguous().cpu()
        for k, v in step_module.state_dict(keep_vars=True).items()
        if id(v) not in model_ids
    }


def save_checkpoint(
    root: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    position: Position,
    generator: torch.Generator,
    step_module: nn.Module | None = None,
    loop_config: LoopConfig | None = None,
    extra: dict | None = None,
    keep: int = 2,
) -> Path:
    """Write `root/step-<step>/` atomically and point `root/latest` at it; returns the folder."""
    from hcmrm.model.checkpoint import save_model

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{position.step:08d}"
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / OPTIMIZER))
    rng_tensors, rng_meta = _rng_state(generator)
    save_file(rng_tensors, str(tmp / RNG))
    if step_module is not None:
        extra_tensors = _extra_state(step_module, model)
        if extra_tensors:
            save_file(extra_tensors, str(tmp / EXTRA))
    meta = {
        "format": FORMAT,
        "position": dataclasses.asdict(position),
        "scheduler": scheduler.state_dict(),
        "optimizer": opt_meta,
        "rng": rng_meta,
        "loop_config": dataclasses.asdict(loop_config) if loop_config else None,
        "extra": extra or {},
        "saved_at": time.time(),
    }
    (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = root / f".{LATEST}.tmp-{os.getpid()}"
    pointer.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer, root / LATEST)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The folder `root/latest` names, or None when there is no complete checkpoint."""
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    folder = Path(root) / pointer.read_text(encoding="utf-8").strip()
    if not (folder / STATE_JSON).exists():
        raise FileNotFoundError(f"{pointer} names {folder}, which is missing or incomplete")
    return folder


def load_checkpoint(
    folder: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    generator: torch.Generator,
    step_module: nn.Module | None = None,
) -> tuple[Position, dict]:
    """Restore everything `save_checkpoint` wrote, in place; returns (position, the JSON meta)."""
    from hcmrm.model.checkpoint import read_state

    folder = Path(folder)
    meta = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder} has format {meta.get('format')!r}, expected {FORMAT!r}")
    model.load_state_dict(read_state(folder, model.config))  # saved tensors over the model's base (if any)
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(folder / OPTIMIZER)), meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"])
    if step_module is not None and (folder / EXTRA).exists():
        step_module.load_state_dict(load_file(str(folder / EXTRA)), strict=False)
    _set_rng_state(load_file(str(folder / RNG)), meta["rng"], generator)
    return Position(**meta["position"]), meta


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class LoopResult:
    steps: int  # optimizer steps done in total (including those before a resume)
    losses: list[float]  # the total loss of each step run in this call
    resumed_from: int  # the step a checkpoint put us at (0 = fresh start)
    epoch_metrics: list[dict] = field(default_factory=list)  # what on_epoch_end returned, per epoch
    seconds: float = 0.0  # wall time of this call


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of an epoch: a pure function of (seed, epoch), so a resume re-derives it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()


class BatchSource(Protocol):
    """Where a training run's batches come from; each process reads its own part of every global batch."""

    identity: dict  # what a resume must find unchanged (the data's size or its files)

    def batches_per_epoch(self, epoch: int) -> int: ...

    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Iterator[object]:
        """This process's batches of `epoch` from batch `start` on, built lazily."""
        ...


@dataclass
class IndexedBatches:
    """Examples in memory: the epoch's order by `epoch_order`, each process building its slice of every
    global batch with make_batch(indices, generator); the generator is the loop's (checkpointed) one."""

    n_examples: int
    make_batch: Callable[[Sequence[int], torch.Generator], object]
    batch_size: int  # the global batch, summed over all processes
    seed: int
    dist: DistInfo = field(default_factory=DistInfo)

    def __post_init__(self):
        if self.batch_size % self.dist.world_size:
            raise ValueError(f"batch_size {self.batch_size} must divide over {self.dist.world_size} processes")
        if self.n_examples < self.batch_size:
            raise ValueError(f"{self.n_examples} examples is less than one batch of {self.batch_size}")
        self.identity = {"n_examples": self.n_examples}

    def batches_per_epoch(self, epoch: int) -> int:
        return self.n_examples // self.batch_size

    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Iterator[object]:
        order, size, dist = epoch_order(self.n_examples, self.seed, epoch), self.batch_size, self.dist
        for b in range(start, self.batches_per_epoch(epoch)):
            yield self.make_batch(order[b * size : (b + 1) * size][dist.rank :: dist.world_size], generator)


def run_loop(
    step_module: nn.Module,
    model: nn.Module,
    source: BatchSource,
    config: LoopConfig,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    on_epoch_end: Callable[[int, int], dict] | None = None,
    log_metrics: Callable[[dict, int], None] | None = None,
    progress: bool = True,
    dist: DistInfo | None = None,
    description: str = "train",
    device: torch.device | None = None,
) -> LoopResult:
    """Train `step_module` (forward(batch, generator) -> dict with "loss") on the batches of `source`.

    The generator is the one source of randomness of the step (hard negatives) and of in-memory batch
    building (masking), and is checkpointed. Under `dist` each process reads its part of every global
    batch and DDP averages gradients. `device` (default the CPU) holds the step module and the batches.
    on_epoch_end(epoch, step) runs on the main process after each epoch (evaluation) and returns
    metrics to log. Raises nothing on an interruption: the caller's exception propagates, and
    the last checkpoint is intact.
    """
    dist = dist or DistInfo()
    device = torch.device(device or "cpu")
    total, epochs = _schedule_length(source, config)
    step_module.to(device)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, total)
    generator = _seed_everything(config, dist)
    identity = {**source.identity, "model_config": _config_dict(model)}
    folder = latest_checkpoint(checkpoint_dir) if checkpoint_dir and resume else None
    position = Position()
    if folder is not None:
        _check_same_run(folder, config, identity)
        position, _ = load_checkpoint(folder, model, optimizer, scheduler, generator, step_module)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", folder, position.step, position.epoch, position.batch)
    resumed_from = position.step

    trained = wrap_model(step_module, dist, device)
    trained.train()
    run = _Run(step_module, model, trained, optimizer, scheduler, generator, config, dist, device, position,
               source, total, checkpoint_dir, identity, log_metrics)  # fmt: skip
    started = time.time()
    run.bar = _progress(total, position.step, description, progress and dist.is_main)
    try:
        while position.step < total and position.epoch < epochs:
            run.train_epoch()
            if position.batch >= source.batches_per_epoch(position.epoch):
                run.end_epoch(on_epoch_end)
            elif position.step >= total:
                run.checkpoint()
    finally:
        if run.bar is not None:
            run.bar.close()
    return LoopResult(position.step, run.losses, resumed_from, run.epoch_metrics, time.time() - started)


def _schedule_length(source: BatchSource, config: LoopConfig) -> tuple[int, int]:
    """(optimizer steps in all, epochs started): max_steps, or the batches of `config.epochs` epochs."""
    if not config.max_steps:
        return sum(source.batches_per_epoch(e) for e in range(config.epochs)), config.epochs
    steps, epochs = 0, 0
    while steps < config.max_steps:
        steps += source.batches_per_epoch(epochs)
        epochs += 1
    return config.max_steps, epochs


def _seed_everything(config: LoopConfig, dist: DistInfo) -> torch.Generator:
    """Seed every RNG a step may touch; returns the generator that batches and steps draw from."""
    generator = torch.Generator().manual_seed(config.seed * 7919 + 17)
    torch.manual_seed(config.seed * 104_729 + dist.rank)  # dropout differs per process, as it should
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    return generator


@dataclass
class _Run:
    """What one call of `run_loop` trains with, where it stands, and what it has recorded so far."""

    step_module: nn.Module
    model: nn.Module
    trained: nn.Module  # step_module, wrapped for DDP when distributed
    optimizer: torch.optim.Optimizer
    scheduler: object
    generator: torch.Generator
    config: LoopConfig
    dist: DistInfo
    device: torch.device
    position: Position
    source: BatchSource
    total: int  # optimizer steps of the whole run
    checkpoint_dir: str | Path | None
    identity: dict  # what a resume must find unchanged (data size, model config)
    log_metrics: Callable[[dict, int], None] | None
    bar: object = None  # the progress bar, when shown
    losses: list[float] = field(default_factory=list)  # the total loss of each step
    window: dict[str, list[float]] = field(default_factory=dict)  # step values since the last log
    epoch_metrics: list[dict] = field(default_factory=list)

    def train_epoch(self) -> None:
        """Run the current epoch's remaining batches (or up to the last step of the run)."""
        batches = self.source.batches(self.position.epoch, self.position.batch, self.generator)
        while self.position.step < self.total:
            asked = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            waited = time.perf_counter() - asked  # the step waited this long for its data
            parts, grad_norm = self.optimizer_step(batch.to(self.device, non_blocking=True))
            if self.device.type == "cuda":  # CUDA runs the step asynchronously: time its kernels, not their launch
                torch.cuda.synchronize(self.device)
            parts.update(data_wait_s=waited, step_s=time.perf_counter() - asked)
            self.record(parts, grad_norm)
            if self.config.checkpoint_every and self.position.step % self.config.checkpoint_every == 0:
                self.checkpoint()
        batches.close()  # a streaming source stops its loader workers

    def optimizer_step(self, batch: object) -> tuple[dict, float]:
        """Forward (bf16 autocast on CUDA), backward, clip and update once; returns the loss parts and gradient norm."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            parts = self.trained(batch, self.generator)
        loss = parts["loss"].float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.position.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.model, self.config.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.position.step += 1
        self.position.batch += 1
        return parts, grad_norm

    def record(self, parts: dict, grad_norm: float) -> None:
        """Keep the step's loss, show it, and log the window's averages every `log_every` steps."""
        value = float(parts["loss"].detach())
        self.losses.append(value)
        for key, part in parts.items():
            self.window.setdefault(key, []).append(float(part.detach()) if torch.is_tensor(part) else float(part))
        self.window.setdefault("grad_norm", []).append(grad_norm)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{value:.4f}")
        step = self.position.step
        if step % max(1, self.config.log_every) == 0 or step == self.total:
            if self.log_metrics and self.dist.is_main:
                averaged = {f"train/{k}": sum(v) / len(v) for k, v in self.window.items()}
                averaged["train/lr"] = self.scheduler.get_last_lr()[0]
                self.log_metrics(averaged, step)
            self.window.clear()

    def end_epoch(self, on_epoch_end: Callable[[int, int], dict] | None) -> None:
        """Move to the next epoch, evaluate on the main process, and checkpoint."""
        finished = self.position.epoch
        self.position.epoch += 1
        self.position.batch = 0
        if on_epoch_end is not None:
            metrics = on_epoch_end(finished, self.position.step) if self.dist.is_main else {}
            self.epoch_metrics.append(metrics)
            if self.log_metrics and self.dist.is_main and metrics:
                self.log_metrics(metrics, self.position.step)
            self.trained.train()  # evaluation may have left the model in eval mode
        self.checkpoint()

    def checkpoint(self) -> None:
        if self.checkpoint_dir and self.dist.is_main:
            save_checkpoint(self.checkpoint_dir, self.model, self.optimizer, self.scheduler, self.position,
                            self.generator, self.step_module, self.config, extra=self.identity,
                            keep=self.config.keep_checkpoints)  # fmt: skip


def _config_dict(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    return to_dict(config) if dataclasses.is_dataclass(config) else None


def _check_same_run(folder: Path, config: LoopConfig, identity: dict) -> None:
    """Resume only the run that wrote the checkpoint: same loop settings, data size and model."""
    meta = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    saved = {"loop": meta.get("loop_config"), **(meta.get("extra") or {})}
    now = {"loop": json.loads(json.dumps(dataclasses.asdict(config))), **json.loads(json.dumps(identity))}
    changed = sorted(k for k in now if saved.get(k) != now[k])
    if changed:
        raise ValueError(
            f"{folder} is a checkpoint of another run (different {', '.join(changed)}): "
            "pass another output folder, or start over (--no-resume / resume=False)"
        )


def _progress(total: int, initial: int, description: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="step", dynamic_ncols=True, mininterval=2.0)
