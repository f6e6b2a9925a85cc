"""pretrain: `pretrain_pairs` -> a pre-trained HCMRM (ITC + ITM + MLM + PQVM), tracked in MLflow.

    hcmrm pretrain [--date 2024-08-25 ...] [--input PATH] [--train-conf conf/train/pretrain.yaml]
                   [--preset small] [--steps N] [--epochs N] [--batch-size N] [--lr X] [--seed N]
                   [--weights pqvm=0] [--out runs/pretrain] [--no-resume]
    spark-submit jobs/pretrain.py [same flags]
    torchrun --nproc-per-node 2 jobs/pretrain.py --input pairs.parquet ...      (several processes, gloo)
    hcmrm pretrain --num-processes 2 ...         (the same through Spark's TorchDistributor, local mode)

Reads the Delta table `pretrain_pairs` of the lake (or --input: a Delta table, Parquet, JSON lines),
collects the selected dates to the driver (pandas via Arrow) and trains with the loss weights of
the training config. Checkpoints (safetensors + JSON) go to --out/checkpoints; a rerun with the same
--out resumes exactly where the last checkpoint left off. The MLflow run (experiment
`hcmrm-pretrain`) holds the parameters, the per-step losses and the model folder (artifact `model`),
which `hcmrm finetune --init runs:/<run_id>/model` or `--init <out>/model` starts from.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hcmrm.config import load, to_dict
from hcmrm.settings import CONF_DIR, Settings
from jobs.common import script_main, settings_from_args

COMMAND = "pretrain"
HELP = "pre-train HCMRM (ITC + ITM + MLM + PQVM) on pretrain_pairs, tracked in MLflow"

log = logging.getLogger(__name__)

CONF_FILE = CONF_DIR / "train" / "pretrain.yaml"
EXPERIMENT = "hcmrm-pretrain"
COLUMNS = ["video_id", "dt", "pseudo_query", "context_text", "frames"]
FILE_SUFFIXES = (".parquet", ".pq", ".json", ".jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", action="append", metavar="YYYY-MM-DD", help="a dt of pretrain_pairs; repeatable (default: all)")
    parser.add_argument("--input", help="pretrain_pairs as a Delta table, Parquet or JSON lines (default: the lake's)")
    parser.add_argument("--limit", type=int, help="train on at most this many pairs (a quick run)")
    add_training_arguments(parser, CONF_FILE)
    parser.add_argument("--weights", help="loss weights, e.g. 'itc=1,itm=1,mlm=1,pqvm=0' (ALBEF-style)")
    parser.add_argument("--out", type=Path, help="run folder: checkpoints and the model (default runs/pretrain)")
    parser.add_argument("--num-processes", type=int, help="train with N processes through Spark's TorchDistributor")


def add_training_arguments(parser: argparse.ArgumentParser, conf_file: Path) -> None:
    """Flags shared with `hcmrm finetune`: each overrides the training YAML."""
    group = parser.add_argument_group("training (override the training YAML)")
    group.add_argument("--train-conf", type=Path, default=conf_file, help=f"training YAML (default {conf_file})")
    group.add_argument("--preset", help="model preset of a fresh model: tiny | small | base")
    group.add_argument("--steps", type=int, help="optimizer steps (0 = whole epochs)")
    group.add_argument("--epochs", type=int, help="passes over the data")
    group.add_argument("--batch-size", type=int, help="global batch size")
    group.add_argument("--lr", type=float, help="peak learning rate")
    group.add_argument("--seed", type=int, help="seed of the data order, masking, negatives, dropout")
    group.add_argument("--threads", type=int, help="torch CPU threads")
    group.add_argument("--log-every", type=int, help="steps between logged losses (1 = every step)")
    group.add_argument("--no-resume", action="store_true", help="start over even if --out has a checkpoint")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--experiment", help="MLflow experiment name")


def training_overrides(args: argparse.Namespace) -> dict:
    """The training YAML's keys that the flags set (an unset flag is None: hcmrm.config.merge skips it)."""
    return {"preset": args.preset, "num_threads": args.threads, "loop.max_steps": args.steps,
            "loop.epochs": args.epochs, "loop.batch_size": args.batch_size, "loop.seed": args.seed,
            "loop.log_every": args.log_every, "loop.optim.lr": args.lr}


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


def is_plain_file(path: str) -> bool:
    """A Parquet / JSON-lines file (or Parquet folder) that pandas reads without Spark."""
    p = Path(path)
    return p.suffix in FILE_SUFFIXES or (p.is_dir() and not (p / "_delta_log").exists() and any(p.glob("*.parquet")))


def select_pairs(df, dates: list[str] | None):
    """pretrain_pairs -> the training columns of the chosen dates (a transform, DataFrame -> DataFrame)."""
    from pyspark.sql import functions as F

    missing = [c for c in ("pseudo_query", "context_text") if c not in df.columns]
    if missing:
        raise ValueError(f"pretrain_pairs lacks columns {missing}; it has {df.columns}")
    if dates:
        df = df.where(F.col("dt").isin(dates))
    columns = [c for c in COLUMNS if c in df.columns]
    return df.select(columns).orderBy(*[c for c in ("dt", "video_id") if c in columns])


def read_pairs(args: argparse.Namespace, settings: Settings):
    """The pairs as pandas: straight from a file, or through Spark from a Delta table."""
    import pandas as pd

    from hcmrm.train.labeled_data import read_records

    path = args.input or settings.table("pretrain_pairs")
    if is_plain_file(path):
        frame = read_records(path)
        if args.date and "dt" in frame.columns:
            frame = frame[frame["dt"].isin(args.date)]
    else:
        from jobs.common import spark_from_args
        from jobs.tables import read_table

        spark = spark_from_args(args, settings, COMMAND)
        if "://" not in path and not Path(path).exists():
            raise SystemExit(f"no pre-training pairs at {path}: run `hcmrm pseudo-queries`, or pass --input FILE")
        pairs = select_pairs(read_table(spark, path), args.date)
        frame = (pairs.limit(args.limit) if args.limit else pairs).toPandas()  # the limit before the collect
    if args.limit:
        frame = frame.head(args.limit)  # an --input file is read whole (it is local already)
    if len(frame) == 0:
        raise SystemExit(f"no pre-training pairs in {path}" + (f" for dates {args.date}" if args.date else ""))
    return pd.DataFrame(frame).reset_index(drop=True)


# --- MLflow -------------------------------------------------------------------------------------


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@contextmanager
def tracked_run(settings: Settings, experiment: str, run_name: str, params: dict, is_main: bool = True):
    """An MLflow run on the main process (yields a step logger); nothing on the others."""
    if not is_main:
        yield None, (lambda metrics, step: None)
        return
    from hcmrm.tracking.runs import JOB_TAG, adopt_run
    from hcmrm.tracking.store import configure, use_experiment

    mlflow = configure(settings)
    use_experiment(settings, experiment)
    with mlflow.start_run(run_name=run_name, tags={JOB_TAG: run_name}) as run:
        adopt_run(mlflow.MlflowClient(), run.info.run_id)  # KILLED if stopped; closes runs a kill -9 left
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})

        def log_metrics(metrics: dict, step: int) -> None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

        yield run, log_metrics


# --- run ----------------------------------------------------------------------------------------


def launch(args: argparse.Namespace, settings: Settings, command: str, worker, overrides: dict):
    """Run `worker(options)` in args.num_processes processes with Spark's TorchDistributor (local mode);
    options are the parsed flags with `overrides` applied. Returns rank 0's return value."""
    import torch
    from pyspark.ml.torch.distributor import TorchDistributor

    from jobs.common import spark_from_args

    spark_from_args(args, settings, command)  # TorchDistributor runs under the active session
    options = {k: v for k, v in vars(args).items() if k != "handler"}
    options.update(overrides)
    distributor = TorchDistributor(num_processes=args.num_processes, local_mode=True, use_gpu=torch.cuda.is_available())
    return distributor.run(worker, options)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if (args.num_processes or 1) > 1 and "WORLD_SIZE" not in os.environ:
        frame = read_pairs(args, settings)
        folder = Path(tempfile.mkdtemp(prefix="hcmrm-pretrain-"))
        try:
            frame.to_parquet(folder / "pairs.parquet")
            overrides = {"input": str(folder / "pairs.parquet"), "date": None, "limit": None, "num_processes": None}
            message = launch(args, settings, COMMAND, distributed_worker, overrides)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        message = pretrain_and_log(args, settings)
    if message:
        print(message)
    return 0


def distributed_worker(options: dict):
    """One of the N processes TorchDistributor starts (RANK, WORLD_SIZE... are set)."""
    from jobs.common import configure_logging

    configure_logging()
    return pretrain_and_log(argparse.Namespace(**options), settings_from_args(argparse.Namespace(**options)))


def pretrain_and_log(args: argparse.Namespace, settings: Settings) -> str | None:
    """Pre-train (joining a process group when launched as several); the main process logs to MLflow."""
    from hcmrm.train import distributed
    from hcmrm.train.pretrain import examples_from_records, pretrain
    from hcmrm.tracking.registry import log_model_dir

    config = load_config(args)
    dist = distributed.init()
    frame = read_pairs(args, settings)
    examples = examples_from_records(frame)
    out = args.out or Path("runs") / "pretrain"
    n_frames = sum(1 for e in examples if e.frames)
    log.info("pre-training on %d pairs (%d with frames) -> %s", len(examples), n_frames, out)
    params = {**to_dict(config), "data": {"input": args.input or settings.table("pretrain_pairs"),
                                           "dates": ",".join(args.date or []) or "all", "pairs": len(examples),
                                           "with_frames": n_frames}, "processes": dist.world_size}
    message = None
    try:
        with tracked_run(settings, args.experiment or EXPERIMENT, "pretrain", params, dist.is_main) as (mlrun, log_metrics):
            result = pretrain(examples, config, out, log_metrics=log_metrics, progress=not args.no_progress,
                              dist=dist, resume=not args.no_resume)
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
