"""pretrain: `pretrain_pairs` -> a pre-trained HCMRM (ITC + ITM + MLM + PQVM), tracked in MLflow.

    hcmrm pretrain [--date 2024-08-25 ...] [--input PATH] [--train-conf conf/train/pretrain.yaml]
                   [--preset small] [--steps N] [--epochs N] [--batch-size N] [--lr X] [--seed N]
                   [--weights pqvm=0] [--device auto|cpu|cuda] [--out runs/pretrain] [--no-resume]
    spark-submit jobs/pretrain.py [same flags]
    torchrun --nproc-per-node 8 jobs/pretrain.py --input pairs/ ...   (one machine, 8 GPUs: NCCL; CPUs: gloo)
    hcmrm pretrain --num-processes 2 ...   (through Spark's TorchDistributor: local mode under a local
                                            master, one barrier task per rank on a cluster)

Reads the Delta table `pretrain_pairs` of the lake at its latest version (or --input: a Delta table, or
Parquet / JSON-lines files and folders) as shards: the driver lists the files of the selected dates, and
every rank streams its own shards row group by row group through DataLoader workers that decode, tokenise
and mask (hcmrm.train.shards). No row passes through the driver. Checkpoints (safetensors + JSON) go to
--out/checkpoints; a rerun with the same --out resumes exactly where the last checkpoint left off. The
MLflow run (experiment `hcmrm-pretrain`) holds the parameters, the per-step losses and the model folder
(artifact `model`), which `hcmrm finetune --init runs:/<run_id>/model` or `--init <out>/model` starts from.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from hcmrm.config import load, to_dict
from hcmrm.settings import CONF_DIR, Settings
from jobs.common import script_main, settings_from_args
from jobs.corpus import Corpus, delta_corpus, plain_corpus
from jobs.training import (add_training_arguments, is_plain_file, launch, tracked_run, training_overrides,
                           with_loader_start)

COMMAND = "pretrain"
HELP = "pre-train HCMRM (ITC + ITM + MLM + PQVM) on pretrain_pairs, tracked in MLflow"

log = logging.getLogger(__name__)

CONF_FILE = CONF_DIR / "train" / "pretrain.yaml"
EXPERIMENT = "hcmrm-pretrain"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", action="append", metavar="YYYY-MM-DD", help="a dt of pretrain_pairs; repeatable (default: all)")
    parser.add_argument("--input", help="pretrain_pairs as a Delta table, Parquet or JSON lines (default: the lake's)")
    parser.add_argument("--limit", type=int, help="train on at most this many pairs (a quick run)")
    add_training_arguments(parser, CONF_FILE)
    parser.add_argument("--weights", help="loss weights, e.g. 'itc=1,itm=1,mlm=1,pqvm=0' (ALBEF-style)")
    parser.add_argument("--out", type=Path, help="run folder: checkpoints and the model (default runs/pretrain)")
    parser.add_argument("--num-processes", type=int, help="train with N processes through Spark's TorchDistributor")


def parse_weights(text: str | None) -> dict:
    if not text:
        return {}
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in ("itc", "itm", "mlm", "pqvm"):
            raise SystemExit(f"--weights expects name=value pairs of itc, itm, mlm, pqvm; got {part!r}")
        weights[name.strip()] = float(value)
    return weights


def load_config(args: argparse.Namespace):
    from hcmrm.train.pretrain import PretrainConfig

    weights = {f"weights.{name}": value for name, value in parse_weights(args.weights).items()}
    return load(PretrainConfig, args.train_conf, {**training_overrides(args), **weights})


# --- read ---------------------------------------------------------------------------------------


def read_corpus(args: argparse.Namespace, settings: Settings) -> Corpus:
    """The pairs to train on, as files: --input as it is, or the lake's Delta table at its latest version."""
    from hcmrm.train.shards import first_rows

    path = str(args.input or settings.table("pretrain_pairs"))
    if is_plain_file(path):
        corpus = plain_corpus(path, args.date)
    else:
        from jobs.common import spark_from_args

        if "://" not in path and not Path(path).exists():
            raise SystemExit(f"no pre-training pairs at {path}: run `hcmrm pseudo-queries`, or pass --input FILE")
        corpus = delta_corpus(spark_from_args(args, settings, COMMAND), path, args.date)
    if args.limit:
        corpus = dataclasses.replace(corpus, shards=first_rows(corpus.shards, args.limit))
    if corpus.rows == 0:
        raise SystemExit(f"no pre-training pairs in {path}" + (f" for dates {args.date}" if args.date else ""))
    return corpus


# --- run ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    load_config(args)  # a bad flag or training YAML fails before any file is listed
    corpus = read_corpus(args, settings)
    if (args.num_processes or 1) > 1 and "WORLD_SIZE" not in os.environ:
        out = str(Path(args.out or Path("runs") / "pretrain").resolve())
        message = launch(args, settings, COMMAND, distributed_worker, {"corpus": corpus, "out": out})
    else:
        message = pretrain_and_log(args, settings, corpus)
    if message:
        print(message)
    return 0


def distributed_worker(options: dict):
    """One of the N processes TorchDistributor starts (RANK, WORLD_SIZE... are set); `corpus` is the driver's list."""
    from jobs.common import configure_logging

    configure_logging()
    corpus = options.pop("corpus")
    args = argparse.Namespace(**options)
    return pretrain_and_log(args, settings_from_args(args), corpus)


def pretrain_and_log(args: argparse.Namespace, settings: Settings, corpus: Corpus) -> str | None:
    """Pre-train on this process's device (joining a process group when launched as several); the main
    process logs to MLflow."""
    from hcmrm.train import distributed
    from hcmrm.train.pretrain import pretrain
    from hcmrm.tracking.registry import log_model_dir

    config = with_loader_start(load_config(args))
    device = distributed.pick_device(args.device)
    dist = distributed.init(device)
    out = Path(args.out or Path("runs") / "pretrain")
    log.info("pre-training on %d pairs in %d shards on %s -> %s", corpus.rows, len(corpus.shards), device, out)
    params = {**to_dict(config), "data": {"input": corpus.path, "version": corpus.version,
                                           "dates": ",".join(args.date or []) or "all", "pairs": corpus.rows,
                                           "shards": len(corpus.shards)},
              "processes": dist.world_size, "device": device.type}
    message = None
    try:
        with tracked_run(settings, args.experiment or EXPERIMENT, "pretrain", params, dist.is_main) as (mlrun, log_metrics):
            result = pretrain(corpus.shards, config, out, log_metrics=log_metrics, progress=not args.no_progress,
                              dist=dist, resume=not args.no_resume, device=device)
            if dist.is_main:
                import mlflow

                mlflow.log_metrics({"steps": result.loop.steps, "seconds": result.loop.seconds})
                mlflow.log_dict(to_dict(config), "pretrain_config.json")
                log_model_dir(result.model_dir)
                message = f"pre-trained model: {result.model_dir} (MLflow run {mlrun.info.run_id}, artifact 'model')"
    finally:
        distributed.shutdown()
    return message


if __name__ == "__main__":
    script_main(sys.modules[__name__])
