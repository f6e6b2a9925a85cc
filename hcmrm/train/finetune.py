"""Fine-tuning on graded (query, video, 0..3) pairs, evaluated on a dev set after every epoch.

    examples = to_examples(build_texts(read_labeled("train.jsonl").pairs))
    result = finetune(examples, dev_examples, FinetuneConfig(), "runs/ft", init="runs/pt/model")
    result = finetune(list_shards(["runs/ft/input/train"]), dev_examples, ...)   # staged rows, streamed

Training examples are in memory, or shards of staged rows (`labeled_data.STAGED_COLUMNS`, as
jobs/labeled_input.py writes them) streamed through loader workers that tokenise and decode (hcmrm.train.shards).

The loss is the hierarchical softmax (default) or the BCE baseline; `init` starts from a
pre-trained model folder, a checkpoint root, a models:/ URI or a model object, and the relevance
head is created fresh when the checkpoint's head has another shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hcmrm.train.batching import LabeledExample, collate_labeled
from hcmrm.config import override
from hcmrm.labels import GRADE_NAMES
from hcmrm.model.config import preset
from hcmrm.train.distributed import DistInfo
from hcmrm.train.labeled_data import STAGED_COLUMNS, check_label_map, labeled_example
from hcmrm.model.losses import relevance_loss
from hcmrm.train.metrics import POSITIVE_LABEL, Metrics, p_at_least, relevance_metrics
from hcmrm.model.checkpoint import new_model
from hcmrm.model.network import HCMRM
from hcmrm.model.tokenizer import Tokenizer
from hcmrm.train.loop import BatchSource, LoopConfig, LoopResult, latest_checkpoint, run_loop
from hcmrm.train import shards
from hcmrm.train.shards import Shard, StreamConfig

log = logging.getLogger(__name__)

LOSSES = {"hierarchical_softmax": "hierarchical", "bce": "bce"}  # --loss name -> model head
# QBQTC grades 0 not / 1 somewhat / 2 very relevant; "very" is the positive class on both scales
# (docs/training.md), so 2 -> Excellent and "somewhat" stays below the line as Less.
DEFAULT_LABEL_MAPS = {"kuake": {0: 0, 1: 1, 2: 2, 3: 3}, "qbqtc": {0: 0, 1: 1, 2: 3}}
PROGRESS_BLOCK = 2048  # pairs scored between two progress reports of `score_examples`


@dataclass
class FinetuneConfig:
    preset: str = "small"  # model preset when not starting from a checkpoint
    model: dict = field(default_factory=dict)  # overrides of the preset or of the checkpoint's config
    loss: str = "hierarchical_softmax"  # "hierarchical_softmax" (the paper) or "bce" (baseline)
    loop: LoopConfig = field(default_factory=LoopConfig)  # epochs, batch size, optimizer, seed, checkpoints
    eval_batch_size: int = 256  # pairs per forward pass when evaluating (the scoring engine's pairs_per_batch)
    positive_label: int = POSITIVE_LABEL  # labels >= this are relevant (AUC, accuracy)
    gate_metric: str = "auc"  # dev metric the registry gate compares
    gate_min_delta: float = 0.0  # margin the candidate must beat the champion by
    num_threads: int = 0  # torch CPU threads (0 = torch's default)
    stream: StreamConfig = field(default_factory=StreamConfig)  # loader workers and shuffling of staged shards
    freeze: list = field(default_factory=list)  # parameter-name prefixes kept fixed, e.g. ["embeddings.word"]
    # raw label -> the model's 0..3, per source scale; `--train NAME=PATH` reads PATH through NAME's map
    label_maps: dict = field(default_factory=lambda: {name: dict(m) for name, m in DEFAULT_LABEL_MAPS.items()})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        self.label_maps = {name: check_label_map(name, m) for name, m in self.label_maps.items()}


class RelevanceStep(nn.Module):
    """One fine-tuning step's forward: the graded pairs' loss under the model's head."""

    def __init__(self, model: HCMRM):
        super().__init__()
        self.model = model

    def forward(self, batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        out = self.model(batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.frames, batch.frame_mask)
        return {"loss": relevance_loss(out.logits, batch.labels, self.model.config.head)}


# --- the starting model ------------------------------------------------------------------------


def _model_folder(init: str | Path, settings=None) -> Path:
    """A training checkpoint root gives its latest checkpoint; any other name goes to the model-URI resolver."""
    from hcmrm.tracking.model_uri import MODEL_FILE, resolve

    path = Path(init)
    if not (path / MODEL_FILE).exists():
        for root in (path, path / "checkpoints"):
            if (root / "latest").exists():
                return latest_checkpoint(root)
    return resolve(init, settings).folder


def initial_model(config: FinetuneConfig, init: str | Path | HCMRM | None = None, settings=None) -> HCMRM:
    """A fresh model (seeded) or a pre-trained one with the relevance head this loss needs."""
    head = LOSSES[config.loss]
    torch.manual_seed(config.loop.seed)
    if init is None:  # a preset on a pretrained base (text.base) starts from the base file's weights
        return _frozen(new_model(preset(config.preset, head=head, **config.model)), config.freeze)
    if isinstance(init, HCMRM):
        base, state = init.config, init.state_dict()
    else:
        from hcmrm.model.checkpoint import load_config_json, read_state

        folder = _model_folder(init, settings)
        base = load_config_json(folder)
        state = read_state(folder, base)
    # A calibration temperature belongs to the weights it was fitted on: training starts uncalibrated.
    model = new_model(override(base, {"relevance_temperature": 1.0, **config.model, "head": head}))
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fresh = sorted(set(own) - set(kept))
    if any(not k.startswith("relevance_head.") for k in fresh):
        raise ValueError(f"checkpoint {init} does not fit the model: missing or reshaped {fresh[:5]}")
    model.load_state_dict(kept, strict=False)
    if fresh:
        log.info("initialised from %s; new relevance head (%s)", init, head)
    return _frozen(model, config.freeze)


def _frozen(model: HCMRM, prefixes: Sequence[str]) -> HCMRM:
    for name, param in model.named_parameters():
        if name.startswith(tuple(prefixes)):
            param.requires_grad_(False)
    return model


# --- evaluation, through the production scoring engine -------------------------------------------


def score_examples(model: HCMRM, examples: Sequence[LabeledExample], batch_size: int | None = None,
                   progress: Callable[[int], None] | None = None):
    """(probs [N, 4], score [N]) of labeled examples through the production engine (hcmrm.scoring.Scorer:
    the nightly job's tokenization, ad-major batching and score), so the gate measures what production runs.

    `batch_size` overrides the engine's pairs per forward pass. With `progress`, the examples are
    scored in blocks of PROGRESS_BLOCK pairs and `progress(pairs_done)` is called after each.
    A model in training is put back in training mode afterwards.
    """
    from hcmrm.scoring import Scorer, ScoringConfig

    engine = ScoringConfig() if batch_size is None else ScoringConfig(pairs_per_batch=batch_size)
    block = PROGRESS_BLOCK if progress is not None else max(len(examples), 1)
    was_training = model.training
    try:
        scorer = Scorer(model, Tokenizer.from_config(model.config), engine, next(model.parameters()).device)
        parts = []
        for start in range(0, len(examples), block):
            part = examples[start:start + block]
            parts.append(scorer.score_pairs([e.query for e in part], [e.text for e in part], [e.frames for e in part]))
            if progress is not None:
                progress(start + len(part))
    finally:
        model.train(was_training)
    if not parts:
        return np.zeros((0, len(GRADE_NAMES)), dtype=np.float32), np.zeros(0, dtype=np.float32)
    return np.concatenate([p for p, _ in parts]), np.concatenate([s for _, s in parts])


def evaluate(model: HCMRM, examples: Sequence[LabeledExample], positive_label: int = POSITIVE_LABEL,
             batch_size: int | None = None, progress: Callable[[int], None] | None = None) -> Metrics:
    """AUC, Spearman, accuracy, per-query NDCG and calibration of the model on labeled examples
    (scored by `score_examples`); accuracy and calibration read P(label >= positive_label)."""
    probs, scores = score_examples(model, examples, batch_size, progress)
    return relevance_metrics([e.label for e in examples], scores, p_at_least(probs, positive_label),
                             [e.query for e in examples], positive_label)


# --- fine-tuning -------------------------------------------------------------------------------


@dataclass
class FinetuneResult:
    model: HCMRM  # the fine-tuned model (eval mode), also saved under out_dir/model
    metrics: dict  # final dev metrics (auc, spearman, accuracy, ndcg, n); {} without a dev set
    history: list[dict]  # dev metrics after each epoch
    loop: LoopResult  # steps, per-step losses, resume point, time
    model_dir: Path | None  # where the model was saved


def finetune(
    train: Sequence[LabeledExample] | Sequence[Shard],
    dev: Sequence[LabeledExample] | None,
    config: FinetuneConfig,
    out_dir: str | Path | None = None,
    init: str | Path | HCMRM | None = None,
    settings=None,
    log_metrics: Callable[[dict, int], None] | None = None,
    progress: bool = True,
    dist: DistInfo | None = None,
    resume: bool = True,
    device: torch.device | None = None,
) -> FinetuneResult:
    """Train on `train` (examples, or shards of staged rows) on `device` (default the CPU), evaluate on `dev`
    after each epoch; saves out_dir/model (+ checkpoints)."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    dist = dist or DistInfo()
    model = initial_model(config, init, settings)
    out_dir = Path(out_dir) if out_dir else None
    history: list[dict] = []
    device = torch.device(device or "cpu")

    def on_epoch_end(epoch: int, step: int) -> dict:
        if not dev:
            return {}
        started = time.time()
        metrics = evaluate(model, dev, config.positive_label, config.eval_batch_size).as_dict()
        history.append({"epoch": epoch, "step": step, **metrics})
        log.info("epoch %d step %d dev %s (%.1fs)", epoch, step, _short(metrics), time.time() - started)
        return {f"dev/{k}": v for k, v in metrics.items() if v is not None and k != "n"}

    loop = run_loop(
        RelevanceStep(model),
        model,
        batch_source(train, model, config, dist, pin_memory=device.type == "cuda"),
        config.loop,
        checkpoint_dir=out_dir / "checkpoints" if out_dir else None,
        resume=resume,
        on_epoch_end=on_epoch_end,
        log_metrics=log_metrics,
        progress=progress,
        dist=dist,
        description="finetune",
        device=device,
    )
    model.eval()
    metrics: dict = {}
    if dev and dist.is_main:
        if history and history[-1]["step"] == loop.steps:
            metrics = {k: v for k, v in history[-1].items() if k not in ("epoch", "step")}
        else:  # stopped mid-epoch (max_steps), or resumed after the last epoch's evaluation
            metrics = evaluate(model, dev, config.positive_label, config.eval_batch_size).as_dict()
    model_dir = None
    if out_dir and dist.is_main:
        from hcmrm.model.checkpoint import save_model

        model_dir = out_dir / "model"
        save_model(model, model_dir)
    return FinetuneResult(model, metrics, history, loop, model_dir)


@dataclass
class RowCollate:
    """Streamed staged rows -> a labeled batch; a class, so that it pickles to loader workers."""

    tokenizer: Tokenizer
    config: object  # the model's HCMRMConfig

    def __call__(self, rows: list[dict], generator: torch.Generator):
        return collate_labeled([labeled_example(r) for r in rows], self.tokenizer, self.config)


def batch_source(train: Sequence[LabeledExample] | Sequence[Shard], model: HCMRM, config: FinetuneConfig,
                 dist: DistInfo, pin_memory: bool = False) -> BatchSource:
    """Batches of examples in memory, or of staged shards streamed through loader workers that collate them."""
    tokenizer = Tokenizer.from_config(model.config)

    def collate_examples(examples, generator):
        return collate_labeled(examples, tokenizer, model.config)

    return shards.batch_source(train, STAGED_COLUMNS, RowCollate(tokenizer, model.config), collate_examples,
                               config.stream, config.loop.batch_size, config.loop.seed, dist, pin_memory)


def _short(metrics: dict) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
