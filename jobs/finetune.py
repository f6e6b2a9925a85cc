"""finetune: graded (query, video, 0..3) pairs -> a fine-tuned HCMRM, registered, and gated to `champion`.

    hcmrm finetune [--train [MAP=]PATH ...] [--dev [MAP=]PATH] [--loss hierarchical_softmax|bce]
                   [--init runs/pretrain/model | runs:/<id>/model | models:/hcmrm/3]
                   [--train-conf conf/train/finetune.yaml] [--epochs N] [--steps N] [--lr X] [--seed N]
                   [--gate-metric auc] [--no-register] [--out runs/finetune]
    spark-submit jobs/finetune.py [same flags]
    torchrun --nproc-per-node 2 jobs/finetune.py --train train.jsonl --dev dev.jsonl ...   (gloo)
    hcmrm finetune --num-processes 2 ...          (the same through Spark's TorchDistributor, local mode)

Labeled pairs come from the lake's Delta table `labeled_pairs` (query, title, label, split; rows of
split `train` to train, `dev` to evaluate), or from --train/--dev: a Delta table, Parquet, a JSON
array or JSON lines, with `query`, a video text (`title` [+ `ocr_text`, `asr_text`] or `text`) or a
`video_id` (its text from `video_texts`, its frames from `videos`), optional `frames`, and
`label`/`relevant` 0..3, or on another scale read through a label map of the training YAML
(`--train qbqtc=v0/train.json`: `label_maps.qbqtc`; --train repeats, the sources train as one set).
A title [+ OCR/ASR] becomes the model's text as the pseudo-queries job builds `video_texts` (same
function, same settings: --text-conf). Rows that cannot be used are counted and logged to the
MLflow run (`rejects.json`), never silently dropped.

The training pairs are staged once as Parquet under --out/input (jobs/labeled_input.py; a table by Spark's
executors) and streamed from there by every rank, its own shards, through loader workers that tokenise and
decode; the dev pairs are read whole. A rerun with the same --out and inputs reuses the staged files and
resumes from the last checkpoint.

Each epoch ends with an evaluation on dev (AUC with label >= 2, Spearman, accuracy, per-query
NDCG), scored by the production engine (hcmrm.scoring.Scorer), as is the gate's. The model folder
is logged to the MLflow run (experiment `hcmrm-finetune`) and registered as a new version of the
model with its metrics; the alias `champion` moves to it only when it beats the
current champion on --gate-metric, measured on the same dev data; the decision is logged either way.
Prints one JSON line: run id, model version, metrics, gate decision.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from hcmrm.config import load, to_dict
from hcmrm.settings import CONF_DIR, Settings
from jobs.common import configure_logging, script_main, settings_from_args
from jobs.training import add_training_arguments, launch, tracked_run, training_overrides, with_loader_start
from jobs.pseudo_queries import CONF_FILE as TEXT_CONF

COMMAND = "finetune"
HELP = "fine-tune HCMRM on labeled pairs, evaluate, register in MLflow, move champion if better"

log = logging.getLogger(__name__)

CONF_FILE = CONF_DIR / "train" / "finetune.yaml"
EXPERIMENT = "hcmrm-finetune"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", action="append", metavar="[MAP=]PATH",
                        help="training pairs: Delta table, Parquet, JSON (default: the lake's labeled_pairs); repeat for "
                             "several sources; MAP= reads the labels through the training YAML's label_maps[MAP]")
    parser.add_argument("--dev", metavar="[MAP=]PATH",
                        help="dev pairs, same formats (default: the --train sources' rows of --dev-split)")
    parser.add_argument("--train-split", default="train", help="rows of this split train (when there is a split column)")
    parser.add_argument("--dev-split", default="dev", help="rows of this split evaluate")
    parser.add_argument("--videos", help="videos table for pairs given by video_id (default: the lake's videos)")
    parser.add_argument("--text-conf", type=Path, default=TEXT_CONF,
                        help=f"how a title [+ OCR/ASR] becomes the model's text (default {TEXT_CONF})")
    parser.add_argument("--loss", choices=("hierarchical_softmax", "bce"), help="default: the training YAML's")
    parser.add_argument("--init", help="start from a model folder, a checkpoint root, runs:/.../model or models:/...")
    parser.add_argument("--limit", type=int, help="train on at most this many pairs (a quick run)")
    add_training_arguments(parser, CONF_FILE)
    parser.add_argument("--gate-metric", choices=("auc", "spearman", "accuracy", "ndcg"), help="metric of the gate")
    parser.add_argument("--no-register", action="store_true", help="log the run, but register no model version")
    parser.add_argument("--out", type=Path, help="run folder: checkpoints and the model (default runs/finetune)")
    parser.add_argument("--num-processes", type=int, help="train with N processes through Spark's TorchDistributor")


def load_config(args: argparse.Namespace):
    from hcmrm.train.finetune import FinetuneConfig

    flags = {**training_overrides(args), "loss": args.loss, "gate_metric": args.gate_metric}
    return load(FinetuneConfig, args.train_conf, flags)


# --- read ---------------------------------------------------------------------------------------


def read_training_data(args: argparse.Namespace, settings: Settings, out: Path):
    """The training pairs staged under `out`/input (one folder per torchrun rank), the dev pairs read whole."""
    from jobs.common import spark_from_args
    from jobs.labeled_input import training_data

    rank = os.environ.get("RANK") if "WORLD_SIZE" in os.environ else None  # torchrun: each rank stages its own copy
    folder = out / ("input" if rank is None else f"input-rank{rank}")
    return training_data(args, settings, folder, lambda: spark_from_args(args, settings, COMMAND))


def fingerprint(examples) -> str:
    """Order-independent digest of the evaluation set: the gate compares metrics on equal data only."""
    lines = sorted(f"{e.query}\t{e.text}\t{e.label}\t{len(e.frames or [])}" for e in examples)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def _rejects_summary(rejects) -> dict:
    if rejects is None or len(rejects) == 0:
        return {"count": 0, "reasons": {}, "rows": []}
    keep = [c for c in rejects.columns if c != "frames"]
    return {
        "count": int(len(rejects)),
        "reasons": {str(k): int(v) for k, v in rejects["reason"].value_counts().items()},
        "rows": json.loads(rejects[keep].head(1000).to_json(orient="records", force_ascii=False)),
    }


# --- run ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    out = Path(args.out or Path("runs") / "finetune").resolve()
    data = read_training_data(args, settings, out)
    if (args.num_processes or 1) > 1 and "WORLD_SIZE" not in os.environ:
        overrides = {"out": str(out), "training_data": data, "num_processes": None}
        summary = launch(args, settings, COMMAND, distributed_worker, overrides)
    else:
        summary = train_and_register(args, settings, data)
    if summary is not None:
        if summary.get("gate"):
            print(gate_line(summary["gate"]))
        print(json.dumps(summary, ensure_ascii=False))
    return 0


def gate_line(decision: dict) -> str:
    """The gate's decision in one line, for people reading the job's output (the JSON line follows)."""
    verdict = "PROMOTED to champion" if decision["promote"] else "refused: champion stays"
    return f"gate: v{decision['candidate_version']} {verdict} ({decision['reason']})"


def distributed_worker(options: dict):
    """One of the N processes TorchDistributor starts (RANK, WORLD_SIZE... are set); the driver staged the data."""
    configure_logging()
    data = options.pop("training_data")
    args = argparse.Namespace(**options)
    return train_and_register(args, settings_from_args(args), data)


def train_and_register(args: argparse.Namespace, settings: Settings, data) -> dict | None:
    """Train (joining a process group when launched as several), then register and gate on the main process."""
    from hcmrm.train import distributed
    from hcmrm.tracking import gate
    from hcmrm.tracking import registry
    from hcmrm.train.finetune import evaluate, finetune
    from hcmrm.train.labeled_data import to_examples

    config = with_loader_start(load_config(args))
    device = distributed.pick_device(args.device)
    dist = distributed.init(device)
    dev = to_examples(data.dev) if data.dev is not None else None
    rejects = data.rejects
    if len(rejects) and dist.is_main:
        log.warning("%d labeled rows rejected: %s", len(rejects), rejects["reason"].value_counts().to_dict())
    rejected = int(len(rejects))
    out = Path(args.out or Path("runs") / "finetune")
    data_id = fingerprint(dev) if dev else None
    params = {**to_dict(config), "init": args.init or "none",
              "data": {"train": ", ".join(args.train or [settings.table("labeled_pairs")]),
                       "dev": args.dev or f"split={args.dev_split}",
                       "train_pairs": data.train_rows, "train_shards": len(data.shards), "dev_pairs": len(dev or []),
                       "rejected": rejected,
                       "dev_fingerprint": data_id or "none"},
              "processes": dist.world_size, "device": device.type}
    summary = None
    try:
        with tracked_run(settings, args.experiment or EXPERIMENT, f"finetune-{config.loss}", params, dist.is_main) as (
            mlrun, log_metrics
        ):
            result = finetune(data.shards, dev, config, out, init=args.init, settings=settings, log_metrics=log_metrics,
                              progress=not args.no_progress, dist=dist, resume=not args.no_resume,
                              device=device)
            if dist.is_main:
                summary = finish(settings, args, config, result, mlrun, rejects, rejected, dev, data_id,
                                 registry, gate, evaluate)
    finally:
        distributed.shutdown()
    return summary


def finish(settings, args, config, result, mlrun, rejects, rejected, dev, data_id, registry, gate, evaluate) -> dict:
    """Log the model and metrics, register the version, and run the gate (main process only)."""
    import mlflow

    metrics = {k: v for k, v in result.metrics.items() if v is not None}
    if metrics:
        mlflow.log_metrics({f"final_{k}": float(v) for k, v in metrics.items()})
    mlflow.log_dict(_rejects_summary(rejects), "rejects.json")
    mlflow.log_dict({"history": result.history}, "dev_history.json")
    source = registry.log_model_dir(result.model_dir)
    summary = {"run_id": mlrun.info.run_id, "model_dir": str(result.model_dir), "metrics": result.metrics,
               "rejected": rejected, "model_version": None, "gate": None}
    if args.no_register:
        return summary
    if not dev:
        log.warning("no dev pairs: the model is logged but not registered (nothing to gate on)")
        return summary
    version = registry.register_version(settings, mlrun.info.run_id, source,
                                        description=f"finetune {config.loss}, init {args.init or 'scratch'}")
    gate.record_version_metrics(settings, version.version, result.metrics, data_id)

    def evaluate_champion(uri: str) -> dict:  # on the candidate's dev set, through the same engine
        from hcmrm.model.checkpoint import load_model
        from hcmrm.tracking.model_uri import resolve

        champion = load_model(resolve(uri, settings).folder)
        return evaluate(champion, dev, config.positive_label, config.eval_batch_size).as_dict()

    decision = gate.apply_gate(settings, version.version, result.metrics, config.gate_metric, data_id,
                               evaluate_champion, config.gate_min_delta)
    summary.update(model_version=str(version.version), gate=asdict(decision))
    return summary


if __name__ == "__main__":
    script_main(sys.modules[__name__])
