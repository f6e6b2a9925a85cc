"""Pre-training on (pseudo-query, context text, frames) triplets: ITC + ITM + MLM + PQVM.

    examples = examples_from_records(pd.read_parquet("pretrain_pairs.parquet"))
    result = pretrain(examples, PretrainConfig(), "runs/pt")     # -> runs/pt/model, runs/pt/checkpoints

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
from hcmrm.train.loop import LoopConfig, LoopResult, run_loop

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("pseudo_query", "context_text")  # `frames` (list of encoded images) is optional


@dataclass
class PretrainConfig:
    preset: str = "small"  # model preset of the fresh model
    model: dict = field(default_factory=dict)  # overrides of the preset (hcmrm.model.config.preset)
    weights: LossWeights = field(default_factory=LossWeights)  # ITC, ITM, MLM, PQVM loss weights
    loop: LoopConfig = field(default_factory=LoopConfig)  # epochs/steps, batch size, optimizer, seed
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


@dataclass
class PretrainResult:
    model: HCMRM  # the pre-trained model (eval mode)
    loop: LoopResult  # steps, per-step losses, resume point, time
    model_dir: Path | None  # out_dir/model, a model folder for `finetune --init`


def pretrain(
    examples: Sequence[PretrainExample],
    config: PretrainConfig,
    out_dir: str | Path | None = None,
    init: HCMRM | None = None,
    log_metrics: Callable[[dict, int], None] | None = None,
    progress: bool = True,
    dist: DistInfo | None = None,
    resume: bool = True,
) -> PretrainResult:
    """Pre-train a fresh (seeded) model, or `init`, on the examples; resumes from out_dir/checkpoints."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    dist = dist or DistInfo()
    torch.manual_seed(config.loop.seed)
    model = init if init is not None else new_model(preset(config.preset, **config.model))  # a base is read in
    tokenizer = Tokenizer.from_config(model.config)
    out_dir = Path(out_dir) if out_dir else None

    def make_batch(indices, generator):
        return collate_pretrain([examples[i] for i in indices], tokenizer, model.config, generator)

    loop = run_loop(
        PretrainStep(Pretrainer(model, config.weights)),
        model,
        len(examples),
        make_batch,
        config.loop,
        checkpoint_dir=out_dir / "checkpoints" if out_dir else None,
        resume=resume,
        log_metrics=log_metrics,
        progress=progress,
        dist=dist,
        description="pretrain",
    )
    model.eval()
    model_dir = None
    if out_dir and dist.is_main:
        from hcmrm.model.checkpoint import save_model

        model_dir = out_dir / "model"
        save_model(model, model_dir)
    return PretrainResult(model, loop, model_dir)
