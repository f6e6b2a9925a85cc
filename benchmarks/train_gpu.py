"""Samples/s, MFU and peak memory of pre-training and fine-tuning steps on one device (no Spark, no pyspark).

`make bench-train-gpu`: the `base` preset on the device, through the project's own step loop
(hcmrm.train.loop.run_loop with hcmrm.train's PretrainStep / RelevanceStep): on CUDA that is bf16 autocast
with fp32 weights and AdamW state; on the CPU it is fp32. Phases:
  pretrain  ITC + ITM + MLM + PQVM with hard negatives (base: momentum model and a 16k feature queue)
  finetune  the hierarchical-softmax relevance loss on graded pairs
Inputs are synthetic but real text and real JPEGs: pseudo-queries and context texts from the sample's video
titles and OCR text, fine-tuning queries and grades from the sample's labeled pairs, and --frames small
JPEG frames per example cut from the sample's photos (benchmarks/train_scale.py's, decoded and resized to
the preset's frame size in every batch). One batch per phase is prepared (tokenised, masked, decoded,
pinned on CUDA) before timing and fed to every step, so the figures are the step's, not the loader's.

Timing: each (phase, batch size) cell is a fresh run_loop of --warmup + --steps steps; the loop's
`train/step_s` (it synchronises CUDA before reading its timer) of the --steps after the warm-up give the
step time. Cells are interleaved over --rounds rounds; samples/s is the median over rounds (min-max beside).
FLOP per step are counted by torch.utils.flop_counter (as hcmrm.model.flops counts the engine's) on one
step of the same batch: every matmul and attention the step runs, forward and backward, the momentum
model's and the no-grad negative mining's forwards included. MFU = FLOP per step / step time / peak, the
peak a square bf16 matmul measured in this run (fp32 on CPU; benchmarks/engine_gpu.py's) or --peak-tflops.
Peak memory: torch.cuda.max_memory_allocated per cell on CUDA; on the CPU the process's peak RSS so far.

Loss check: one step on a --compare-batch slice of the same batch with the same fresh weights, on the device
and in fp32 on the CPU: both losses (and each pre-training term) and their relative difference. Dropout is
off there (CUDA and the CPU draw different masks); the hard negatives come from the loop's CPU generator on
either device, so only a similarity that bf16 moves across a draw's boundary changes them. On a CPU run
both steps are fp32, which checks the comparison itself (equal losses).

Default batch sizes, meant to fill an H200 (139 GiB), come from an estimate, not a measurement on one (no
GPU was available when this was written). On the CPU under bf16 autocast, the tensors a `base` step's
forward saves for backward (torch.autograd.graph.saved_tensors_hooks, storages counted once; the sample's
texts, 4 frames per example) grew by ~280 MiB per pre-training example (batch 2 -> 4) and ~66 MiB per
fine-tuning pair (4 -> 8), over ~0.3 GiB of bf16 weight copies. With ~115 GiB left after the fp32 weights,
gradients, AdamW moments, the momentum model and headroom, ~420 pre-training examples or ~1,800 pairs fit;
each phase tries three sizes up to ~90% of that, and a size that runs out of memory is reported as such
(and skipped in later rounds), so the largest that fits is read off the output.

Last line: one JSON object with every figure.

    .venv/bin/python benchmarks/train_gpu.py [--device auto] [--preset base] [--rounds 3]
    .venv/bin/python benchmarks/train_gpu.py --device cpu --preset tiny --pretrain-batch 4 --finetune-batch 4 \\
        --compare-batch 4 --warmup 1 --steps 1 --rounds 1 --threads 1      # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import resource
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.engine_gpu import matmul_peak  # noqa: E402
from benchmarks.train_scale import texts_and_frames  # noqa: E402
from hcmrm.model.checkpoint import new_model  # noqa: E402
from hcmrm.model.config import HCMRMConfig, preset  # noqa: E402
from hcmrm.model.flops import counted  # noqa: E402
from hcmrm.model.tokenizer import Tokenizer  # noqa: E402
from hcmrm.settings import SAMPLE_DIR  # noqa: E402
from hcmrm.train.batching import LabeledExample, PretrainExample, collate_labeled, collate_pretrain  # noqa: E402
from hcmrm.train.distributed import DEVICES, pick_device  # noqa: E402
from hcmrm.train.finetune import FinetuneConfig, RelevanceStep, initial_model  # noqa: E402
from hcmrm.train.loop import LoopConfig, run_loop  # noqa: E402
from hcmrm.train.objectives import Pretrainer  # noqa: E402
from hcmrm.train.pretrain import PretrainStep  # noqa: E402

PHASES = ("pretrain", "finetune")
NO_DROPOUT = {"text": {"dropout": 0.0, "attention_dropout": 0.0}}  # the timm ViT has no dropout by default

# torch counts CPU flash attention's forward (registered by hcmrm.model.flops) but not its backward.
_CPU_SDPA_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
if _CPU_SDPA_BACKWARD not in torch.utils.flop_counter.flop_registry:
    @torch.utils.flop_counter.register_flop_formula(_CPU_SDPA_BACKWARD)
    def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                                **kwargs) -> int:
        return torch.utils.flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# --- inputs ---------------------------------------------------------------------------------------


def examples(phase: str, n: int, frames: int, seed: int = 0) -> list:
    """n pre-training triplets or graded pairs from the sample's texts, each with `frames` JPEG frames."""
    rng = random.Random(seed)
    pairs, pool = texts_and_frames()
    if phase == "pretrain":
        return [PretrainExample(*rng.choice(pairs), [rng.choice(pool) for _ in range(frames)]) for _ in range(n)]
    labeled = [json.loads(line) for line in (SAMPLE_DIR / "labeled" / "kuake_qtr_train.jsonl").open(encoding="utf-8")]
    return [LabeledExample(row["query"], rng.choice(pairs)[1], [rng.choice(pool) for _ in range(frames)], row["label"])
            for row in (rng.choice(labeled) for _ in range(n))]


def prepared_batch(phase: str, n: int, frames: int, config: HCMRMConfig, pin: bool):
    """One collated batch of n examples, as the loop's sources build them (pinned for a CUDA device)."""
    tokenizer = Tokenizer.from_config(config)
    if phase == "pretrain":
        batch = collate_pretrain(examples(phase, n, frames), tokenizer, config, torch.Generator().manual_seed(0))
    else:
        batch = collate_labeled(examples(phase, n, frames), tokenizer, config)
    return batch.pin_memory() if pin else batch


def head(batch, n: int):
    """The batch's first n examples (views: a pinned batch stays pinned)."""
    return type(batch)(**{f.name: getattr(batch, f.name)[:n] for f in dataclasses.fields(batch)})


def batch_size(batch) -> int:
    return getattr(batch, dataclasses.fields(batch)[0].name).shape[0]


def step_module(phase: str, preset_name: str, overrides: dict | None = None) -> nn.Module:
    """The phase's step module around a fresh model seeded 0: what hcmrm.train.pretrain/finetune train."""
    torch.manual_seed(0)
    if phase == "pretrain":
        return PretrainStep(Pretrainer(new_model(preset(preset_name, **(overrides or {})))))
    return RelevanceStep(initial_model(FinetuneConfig(preset=preset_name, model=overrides or {})))


def trained_model(module: nn.Module) -> nn.Module:
    return module.pretrainer.model if isinstance(module, PretrainStep) else module.model


# --- steps through the project's loop -----------------------------------------------------------------


@dataclasses.dataclass
class RepeatedBatch:
    """A BatchSource feeding one prepared batch to every step: the loop's work without the loader's."""

    batch: object
    steps: int
    identity: dict = dataclasses.field(default_factory=dict)

    def batches_per_epoch(self, epoch: int) -> int:
        return self.steps

    def batches(self, epoch: int, start: int, generator: torch.Generator):
        return (self.batch for _ in range(start, self.steps))


def train_steps(module: nn.Module, batch, steps: int, device: torch.device) -> list[dict]:
    """`steps` optimizer steps of run_loop (a fresh AdamW) on `device`; each step's logged metrics."""
    logged: list[dict] = []
    run_loop(module, trained_model(module), RepeatedBatch(batch, steps),
             LoopConfig(batch_size=batch_size(batch), max_steps=steps, log_every=1),
             log_metrics=lambda metrics, step: logged.append(metrics), progress=False, device=device)
    return logged


def release(module: nn.Module, device: torch.device) -> None:
    """Back to the CPU, so the next cell's peak memory is its own."""
    module.to("cpu")
    trained_model(module).zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed_cell(module: nn.Module, batch, args, device: torch.device) -> dict:
    """One round of a cell: the mean step time of the timed steps and the cell's peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        logged = train_steps(module, batch, args.warmup + args.steps, device)
        return {"step_s": statistics.fmean(m["train/step_s"] for m in logged[args.warmup:]),
                "peak_memory_mib": peak_memory_mib(device)}
    except torch.OutOfMemoryError:
        return {"oom": True, "peak_memory_mib": peak_memory_mib(device)}
    finally:
        release(module, device)


def loss_check(phase: str, args, batch, device: torch.device) -> dict:
    """One step's loss on the device next to the same step (same weights, same batch) in fp32 on the CPU."""
    part = head(batch, args.compare_batch)
    on_device = train_steps(step_module(phase, args.preset, NO_DROPOUT), part, 1, device)[0]
    on_cpu = train_steps(step_module(phase, args.preset, NO_DROPOUT), part, 1, torch.device("cpu"))[0]
    terms = [k for k in on_cpu if k.startswith("train/") and k not in ("train/lr", "train/grad_norm", "train/step_s",
                                                                       "train/data_wait_s")]
    out = {"batch": args.compare_batch, "device_dtype": "bf16" if device.type == "cuda" else "fp32"}
    for key in terms:
        name = key.removeprefix("train/")
        out[f"{name}_device"], out[f"{name}_cpu_fp32"] = on_device[key], on_cpu[key]
    out["rel_diff"] = abs(on_device["train/loss"] - on_cpu["train/loss"]) / max(abs(on_cpu["train/loss"]), 1e-12)
    return out


# --- the bench ----------------------------------------------------------------------------------------


def summary(batch: int, cell: dict, peak: float) -> dict:
    """A cell's figures over its rounds: median samples/s, its range, MFU, FLOP and peak memory."""
    done, flop = [r for r in cell["rounds"] if "step_s" in r], cell["flop"]
    memory = round(max((r["peak_memory_mib"] for r in cell["rounds"]), default=0.0), 1)
    if cell["oom"] or not done:
        return {"batch": batch, "oom": True, "peak_memory_mib": memory}  # out of device memory
    rates = [batch / r["step_s"] for r in done]
    step_s = statistics.median(r["step_s"] for r in done)
    return {"batch": batch, "samples_per_s": round(statistics.median(rates), 2),
            "samples_per_s_range": [round(min(rates), 2), round(max(rates), 2)], "rounds": len(done),
            "step_s": float(f"{step_s:.4g}"), "gflop_per_step": float(f"{flop / 1e9:.5g}"),
            "gflop_per_sample": float(f"{flop / batch / 1e9:.5g}"), "mfu": float(f"{flop / step_s / peak:.3g}"),
            "peak_memory_mib": memory}


def count_flop(module: nn.Module, batch, device: torch.device) -> int | None:
    """FLOP of one step on this batch (None when it does not fit the device)."""
    try:
        return counted(train_steps, module, batch, 1, device)
    except torch.OutOfMemoryError:
        return None
    finally:
        release(module, device)


def bench_phase_cells(phase: str, args, batch, device: torch.device) -> tuple[nn.Module, dict[int, dict]]:
    module = step_module(phase, args.preset)
    cells = {}
    for size in getattr(args, f"{phase}_batch"):
        flop = count_flop(module, head(batch, size), device)
        cells[size] = {"flop": flop, "rounds": [], "oom": flop is None}
    return module, cells


def run(args, device: torch.device, peak: float) -> dict:
    batches, modules, cells = {}, {}, {}
    for phase in PHASES:
        sizes = getattr(args, f"{phase}_batch")
        batches[phase] = prepared_batch(phase, max(sizes + [args.compare_batch]), args.frames, preset(args.preset),
                                        device.type == "cuda")
        modules[phase], cells[phase] = bench_phase_cells(phase, args, batches[phase], device)
    for _ in range(args.rounds):  # phases and sizes interleaved within each round
        for phase in PHASES:
            for size, cell in cells[phase].items():
                if not cell["oom"]:
                    cell["rounds"].append(timed_cell(modules[phase], head(batches[phase], size), args, device))
                    cell["oom"] = "oom" in cell["rounds"][-1]
    report = {}
    for phase in PHASES:
        report[phase] = {"cells": [summary(size, cell, peak) for size, cell in cells[phase].items()],
                         "loss_check": loss_check(phase, args, batches[phase], device)}
        print(json.dumps({"phase": phase, **report[phase]}), flush=True)
    return report


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--pretrain-batch", type=int, nargs="+", default=[128, 256, 384], help="examples per step")
    parser.add_argument("--finetune-batch", type=int, nargs="+", default=[512, 1024, 1536], help="pairs per step")
    parser.add_argument("--frames", type=int, default=4, help="JPEG frames per example")
    parser.add_argument("--compare-batch", type=int, default=16, help="examples of the bf16 vs fp32 loss check")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each cell's run")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 peak; default: a matmul measured here")
    args = parser.parse_args(argv)
    if min(args.pretrain_batch + args.finetune_batch) < 2 or args.compare_batch < 2:
        parser.error("batch sizes must be >= 2 (hard negatives need another in-batch item)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else matmul_peak(
        device, torch.bfloat16 if cuda else torch.float32, 8192 if cuda else 1024)
    phases = run(args, device, peak)
    report = {"preset": args.preset, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
              "dtype": "bf16 autocast, fp32 weights and AdamW state" if cuda else "fp32",
              "peak_tflops": float(f"{peak / 1e12:.4g}"),
              "peak_from": "--peak-tflops" if args.peak_tflops else "matmul measured in this run",
              "peak_memory_from": "torch.cuda.max_memory_allocated" if cuda else "process peak RSS (ru_maxrss)",
              "frames": args.frames, "warmup": args.warmup, "steps": args.steps, "rounds": args.rounds,
              "best_mfu": {p: max((c.get("mfu", 0.0) for c in phases[p]["cells"]), default=0.0) for p in PHASES},
              "pyspark_loaded": "pyspark" in sys.modules, **phases}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
