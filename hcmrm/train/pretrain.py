"""Pre-training on (pseudo-query, context text, frames) triplets: ITC + ITM + MLM + PQVM.

    result = pretrain(list_shards(["lake/pretrain_pairs"]), PretrainConfig(), "runs/pt")   # streamed
    result = pretrain(examples_from_records(frame), PretrainConfig(), "runs/pt")          # in memory
    # -> runs/pt/model, runs/pt/checkpoints

The loss weights come from the config (`weights.pqvm: 0` is ALBEF-style pre-training). Rows are
the `pretrain_pairs` table (DESIGN.md section 2) or any file with its columns; text corpora come
without frames and train MLM and PQVM only (ITC and ITM need frames).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from hcmrm.train.batching import PretrainExample, collate_pretrain
from hcmrm.model.checkpoint import new_model
from hcmrm.model.config import preset
from hcmrm.train.distributed import DistInfo
from hcmrm.model.network import HCMRM
from hcmrm.train.objectives import LossWeights, Pretrainer
from hcmrm.model.tokenizer import Tokenizer
from hcmrm.train.loop import BatchSource, LoopConfig, LoopResult, run_loop
from hcmrm.train import shards
from hcmrm.train.shards import Shard, StreamConfig

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("pseudo_query", "context_text")  # `frames` (list of encoded images) is optional
COLUMNS = (*REQUIRED_COLUMNS, "frames")


@dataclass
class PretrainConfig:
    preset: str = "small"  # model preset of the fresh model
    model: dict = field(default_factory=dict)  # overrides of the preset (hcmrm.model.config.preset)
    weights: LossWeights = field(default_factory=LossWeights)  # ITC, ITM, MLM, PQVM loss weights
    loop: LoopConfig = field(default_factory=LoopConfig)  # epochs/steps, batch size, optimizer, seed
    stream: StreamConfig = field(default_factory=StreamConfig)  # loader workers and shuffling of a streamed corpus
    num_threads: int = 0  # torch CPU threads (0 = torch's default)


class PretrainStep(nn.Module):
    """One pre-training step's forward: every loss term, named, for the loop to log."""

    def __init__(self, pretrainer: Pretrainer):
        super().__init__()
        self.pretrainer = pretrainer

    def forward(self, batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        out = self.pretrainer(batch, generator)
        return {"loss": out.loss, "itc": out.itc, "itm": out.itm, "mlm": out.mlm, "pqvm": out.pqvm}


def examples_from_records(df: pd.DataFrame) -> list[PretrainExample]:
    """`pretrain_pairs` rows (pandas) -> examples; rows without a pseudo-query or context are refused."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"pre-training data lacks column(s) {missing}; found {list(df.columns)}")
    frames = df["frames"] if "frames" in df.columns else [None] * len(df)
    examples, skipped = [], 0
    for query, context, video in zip(df["pseudo_query"], df["context_text"], frames):
        if not isinstance(query, str) or not query.strip() or not isinstance(context, str):
            skipped += 1
            continue
        has_frames = video is not None and not (isinstance(video, float) and video != video)
        examples.append(PretrainExample(query, context, [bytes(b) for b in video] if has_frames else None))
    if skipped:
        log.warning("skipped %d pre-training rows without a pseudo-query or context text", skipped)
    return examples


def example_from_row(row: dict) -> PretrainExample:
    """One streamed `pretrain_pairs` row -> an example; a row without a pseudo-query or context is an error
    (the pseudo-queries job quarantines those), which the stream reports with its shard and row."""
    query, context, frames = row.get("pseudo_query"), row.get("context_text"), row.get("frames")
    if not isinstance(query, str) or not query.strip() or not isinstance(context, str):
        raise ValueError("no pseudo-query or context text")
    return PretrainExample(query, context, [bytes(b) for b in frames] if frames else None)


@dataclass
class PretrainResult:
    model: HCMRM  # the pre-trained model (eval mode)
    loop: LoopResult  # steps, per-step losses, resume point, time
    model_dir: Path | None  # out_dir/model, a model folder for `finetune --init`


def pretrain(
    data: Sequence[PretrainExample] | Sequence[Shard],
    config: PretrainConfig,
    out_dir: str | Path | None = None,
    init: HCMRM | None = None,
    log_metrics: Callable[[dict, int], None] | None = None,
    progress: bool = True,
    dist: DistInfo | None = None,
    resume: bool = True,
    device: torch.device | None = None,
) -> PretrainResult:
    """Pre-train a fresh (seeded) model, or `init`, on examples in memory or on shards streamed from their
    files; on `device` (default the CPU); resumes from out_dir/checkpoints."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    dist = dist or DistInfo()
    device = torch.device(device or "cpu")
    torch.manual_seed(config.loop.seed)
    model = init if init is not None else new_model(preset(config.preset, **config.model))  # a base is read in
    out_dir = Path(out_dir) if out_dir else None
    loop = run_loop(
        PretrainStep(Pretrainer(model, config.weights)),
        model,
        batch_source(data, model, config, dist, pin_memory=device.type == "cuda"),
        config.loop,
        checkpoint_dir=out_dir / "checkpoints" if out_dir else None,
        resume=resume,
        log_metrics=log_metrics,
        progress=progress,
        dist=dist,
        description="pretrain",
        device=device,
    )
    model.eval()
    model_dir = None
    if out_dir and dist.is_main:
        from hcmrm.model.checkpoint import save_model

        model_dir = out_dir / "model"
        save_model(model, model_dir)
    return PretrainResult(model, loop, model_dir)


@dataclass
class RowCollate:
    """Streamed `pretrain_pairs` rows -> a masked batch; a class, so that it pickles to loader workers."""

    tokenizer: Tokenizer
    config: object  # the model's HCMRMConfig

    def __call__(self, rows: list[dict], generator: torch.Generator):
        return collate_pretrain([example_from_row(r) for r in rows], self.tokenizer, self.config, generator)


def batch_source(data: Sequence[PretrainExample] | Sequence[Shard], model: HCMRM, config: PretrainConfig,
                 dist: DistInfo, pin_memory: bool = False) -> BatchSource:
    """Batches of examples in memory, or of shards streamed through loader workers that collate them."""
    tokenizer = Tokenizer.from_config(model.config)

    def collate_examples(examples, generator):
        return collate_pretrain(examples, tokenizer, model.config, generator)

    return shards.batch_source(data, COLUMNS, RowCollate(tokenizer, model.config), collate_examples, config.stream,
                               config.loop.batch_size, config.loop.seed, dist, pin_memory)
