"""What the training jobs (pretrain, finetune) share: their flags, the claimed MLflow run, the launch of N
processes.

Several processes: `--num-processes N` runs them through Spark's TorchDistributor, in local mode under a
local master and one barrier task per rank on a cluster; each rank streams its own shards of the corpus,
which the driver lists but never reads. GPUs come from the Spark conf (a local driver's or each task's
`resource.gpu.amount`), not from what the driver happens to see.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

from hcmrm.errors import UsageError
from hcmrm.settings import Settings
from hcmrm.train.shards import JSON_SUFFIXES, PARQUET_SUFFIXES
from jobs.claimed_run import claimed_run

FILE_SUFFIXES = PARQUET_SUFFIXES + JSON_SUFFIXES  # the files hcmrm.train.shards reads


def add_training_arguments(parser: argparse.ArgumentParser, conf_file: Path) -> None:
    """Flags shared by `hcmrm pretrain` and `hcmrm finetune`: each overrides the training YAML."""
    group = parser.add_argument_group("training (override the training YAML)")
    group.add_argument("--train-conf", type=Path, default=conf_file, help=f"training YAML (default {conf_file})")
    group.add_argument("--preset", help="model preset of a fresh model: tiny | small | base")
    group.add_argument("--steps", type=int, help="optimizer steps (0 = whole epochs)")
    group.add_argument("--epochs", type=int, help="passes over the data")
    group.add_argument("--batch-size", type=int, help="global batch size")
    group.add_argument("--lr", type=float, help="peak learning rate")
    group.add_argument("--seed", type=int, help="seed of the data order, masking, negatives, dropout")
    group.add_argument("--threads", type=int, help="torch CPU threads")
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: cuda:LOCAL_RANK when CUDA is there (bf16 autocast), else the CPU")
    group.add_argument("--log-every", type=int, help="steps between logged losses (1 = every step)")
    group.add_argument("--no-resume", action="store_true", help="start over even if --out has a checkpoint")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--experiment", help="MLflow experiment name")


def training_overrides(args: argparse.Namespace) -> dict:
    """The training YAML's keys that the flags set (an unset flag is None: hcmrm.config.merge skips it)."""
    return {"preset": args.preset, "num_threads": args.threads, "loop.max_steps": args.steps,
            "loop.epochs": args.epochs, "loop.batch_size": args.batch_size, "loop.seed": args.seed,
            "loop.log_every": args.log_every, "loop.optim.lr": args.lr}


def is_plain_file(path: str) -> bool:
    """A Parquet / JSON-lines file (or Parquet folder) read without Spark."""
    p = Path(path)
    return p.suffix in FILE_SUFFIXES or (p.is_dir() and not (p / "_delta_log").exists() and any(p.glob("*.parquet")))


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
    """A claimed MLflow run (jobs.claimed_run) on the main process, active for MLflow's module-level calls
    (yields it and a step logger); nothing on the others."""
    if not is_main:
        yield None, (lambda metrics, step: None)
        return
    from mlflow.tracking.context.registry import resolve_tags

    from hcmrm.tracking.store import configure, use_experiment

    mlflow = configure(settings)
    experiment_id = use_experiment(settings, experiment)
    # resolve_tags: the source, user and git tags mlflow.start_run would give a run it creates.
    with (claimed_run(mlflow.MlflowClient(), experiment_id, run_name, run_name, tags=resolve_tags()) as claimed,
          mlflow.start_run(run_id=claimed.run_id) as run):
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})

        def log_metrics(metrics: dict, step: int) -> None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

        yield run, log_metrics


def with_loader_start(config):
    """The training config with its loader workers started from a fork server when a Spark session is live
    in this process: a plain fork would copy py4j's connections, and the child's finalizers shut sockets
    that the driver still uses (py4j then logs and reconnects, and a command in flight can fail)."""
    import dataclasses
    import multiprocessing
    import sys

    spark = sys.modules.get("pyspark")
    if spark is None or spark.SparkContext._active_spark_context is None or config.stream.workers == 0:
        return config
    multiprocessing.set_forkserver_preload(["hcmrm.train.shards"])  # workers fork with torch imported
    return dataclasses.replace(config, stream=dataclasses.replace(config.stream, start_method="forkserver"))


def gpus_granted(conf, local: bool, device: str) -> bool:
    """Whether the training processes get GPUs: Spark grants them to the driver (local mode) or to each task."""
    key = "spark.driver.resource.gpu.amount" if local else "spark.task.resource.gpu.amount"
    granted = float(conf.get(key, "0") or 0) > 0
    if device == "cuda" and not granted:
        raise UsageError(f"--device cuda with --num-processes needs {key} (a Spark profile or --conf {key}=1)")
    return granted and device != "cpu"


def launch(args: argparse.Namespace, settings: Settings, command: str, worker, overrides: dict):
    """Run `worker(options)` in args.num_processes processes with Spark's TorchDistributor; options are the
    parsed flags with `overrides` applied and every path made absolute (a cluster's ranks run elsewhere).
    Returns rank 0's return value."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from jobs.common import spark_from_args

    spark = spark_from_args(args, settings, command)  # TorchDistributor runs under the active session
    local = spark.sparkContext.master.startswith("local")
    use_gpu = gpus_granted(spark.sparkContext.getConf(), local, args.device)
    options = {**{k: v for k, v in vars(args).items() if k != "handler"},
               "lake": settings.lake, "tracking_uri": settings.tracking_uri, "artifact_root": settings.artifact_root,
               "device": "cuda" if use_gpu else "cpu", "num_processes": None, **overrides}
    distributor = TorchDistributor(num_processes=args.num_processes, local_mode=local, use_gpu=use_gpu)
    return distributor.run(worker, options)
